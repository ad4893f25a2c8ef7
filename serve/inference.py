"""Classification: the Open Inference Protocol v2 (what tritonclient and KServe clients speak)
and a plain /v1/classify for humans.

v2 infer takes one input tensor:
- image bundles: "image", BYTES, shape [N], each element an encoded image (JPEG, PNG, ...),
  or "frames", UINT8, shape [N, H, W, C] or [H, W, C] of raw BGR frames;
- text bundles: "text", BYTES, shape [N], UTF-8 strings.
Tensors come as JSON `data` (BYTES of an image bundle as base64 strings) or in the binary
extension that tritonclient uses by default (Inference-Header-Content-Length; each BYTES
element prefixed by its 4-byte little-endian length). Answers are JSON tensors "labels"
(BYTES [N, k]) and "probabilities" (FP32 [N, k]); `parameters.top_k` chooses k (default 5).
"""
from __future__ import annotations

import base64
import binascii
import struct
import time
from typing import Any

import anyio
import numpy as np
from starlette.requests import Request

from reelrt.serve.http import ApiError, parse_json
from reelrt.serve.metrics import Metrics
from reelrt.serve.models import Hosted
from reelrt.serve.options import Options

_DTYPES = {"UINT8": np.uint8}


def metadata(h: Hosted) -> dict:
    """GET /v2/models/{name}: the tensors a client sends and gets."""
    if h.task == "image-classification":
        inputs = [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                  {"name": "frames", "datatype": "UINT8", "shape": [-1, -1, -1, -1]}]
    elif h.task == "text-classification":
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    else:
        inputs = [{"name": "text_input", "datatype": "BYTES", "shape": [1]}]  # described; served by /v1/completions
    outputs = ([{"name": "labels", "datatype": "BYTES", "shape": [-1, -1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]}]
               if h.task != "text-generation" else [{"name": "text_output", "datatype": "BYTES", "shape": [1]}])
    return {"name": h.name, "versions": ["1"], "platform": f"reelrt_{h.model.manifest.family}",
            "inputs": inputs, "outputs": outputs,
            "parameters": {"task": h.task, "precision": h.model.manifest.precision}}


def decode_infer(body: bytes, header_length: str | None) -> tuple[dict, list[tuple[dict, Any]]]:
    """The JSON header and each input with its values (a list from JSON, or raw bytes from the
    binary extension)."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ApiError(400, f"Inference-Header-Content-Length {header_length!r} does not fit the body")
        body, binary = body[:int(header_length)], body[int(header_length):]
    head = parse_json(body)
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ApiError(400, "'inputs' must hold exactly one tensor")
    out, offset = [], 0
    for tensor in inputs:
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise ApiError(400, f"binary_data_size {size!r} does not fit the body")
            out.append((tensor, binary[offset:offset + size]))
            offset += size
        else:
            if "data" not in tensor:
                raise ApiError(400, f"input {tensor.get('name')!r} has neither 'data' nor binary_data_size")
            out.append((tensor, tensor["data"]))
    return head, out


def _shape(tensor: dict) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ApiError(400, f"input {tensor.get('name')!r}: shape must be a list of non-negative ints, not {shape!r}")
    return shape


def _bytes_elements(values: Any, tensor: dict, base64_strings: bool) -> list[bytes]:
    """The elements of a BYTES tensor, from JSON strings or the length-prefixed binary form."""
    if isinstance(values, bytes):
        items, i = [], 0
        while i < len(values):
            if i + 4 > len(values):
                raise ApiError(400, "a BYTES element is cut short in the binary data")
            (n,) = struct.unpack_from("<I", values, i)
            if i + 4 + n > len(values):
                raise ApiError(400, "a BYTES element is cut short in the binary data")
            items.append(values[i + 4:i + 4 + n])
            i += 4 + n
    else:
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ApiError(400, f"input {tensor.get('name')!r}: BYTES data must be a list of strings")
        try:
            items = [base64.b64decode(v, validate=True) if base64_strings else v.encode() for v in values]
        except (binascii.Error, ValueError):
            raise ApiError(400, f"input {tensor.get('name')!r}: image BYTES in JSON must be base64 strings") from None
    if int(np.prod(_shape(tensor))) != len(items):
        raise ApiError(400, f"input {tensor.get('name')!r}: shape {tensor['shape']} does not hold {len(items)} elements")
    return items


def _frames(values: Any, tensor: dict, options: Options) -> np.ndarray:
    shape = _shape(tensor)
    if len(shape) not in (3, 4):
        raise ApiError(400, f"frames must be [N, H, W, C] or [H, W, C], not {shape}")
    if shape[-3] * shape[-2] > options.max_image_pixels:
        raise ApiError(400, f"a {shape[-2]}x{shape[-3]} frame is over the limit of {options.max_image_pixels} pixels")
    count = int(np.prod(shape))
    if isinstance(values, bytes):
        if len(values) != count:
            raise ApiError(400, f"frames of shape {shape} need {count} bytes, got {len(values)}")
        array = np.frombuffer(values, np.uint8)
    else:
        try:
            array = np.asarray(values, np.int64).reshape(-1)
        except (ValueError, TypeError):
            raise ApiError(400, "frames data must be a flat list of ints in [0, 255]") from None
        if array.size != count or (array.size and (array.min() < 0 or array.max() > 255)):
            raise ApiError(400, f"frames of shape {shape} need {count} ints in [0, 255], got {array.size}")
        array = array.astype(np.uint8)
    array = array.reshape(shape)
    return array if array.ndim == 4 else array[None]


def items_for(h: Hosted, tensor: dict, values: Any, options: Options) -> list:
    """What the classifier's classify() takes, from one v2 input tensor."""
    name, dtype = tensor.get("name"), tensor.get("datatype")
    if h.task == "image-classification":
        if name == "image" and dtype == "BYTES":
            items = _bytes_elements(values, tensor, base64_strings=True)
        elif name == "frames" and dtype == "UINT8":
            items = list(_frames(values, tensor, options))
        else:
            raise ApiError(400, f"{h.name} takes 'image' (BYTES) or 'frames' (UINT8), not {name!r} ({dtype})")
    elif h.task == "text-classification":
        if name != "text" or dtype != "BYTES":
            raise ApiError(400, f"{h.name} takes 'text' (BYTES), not {name!r} ({dtype})")
        try:
            items = [b.decode("utf-8") for b in _bytes_elements(values, tensor, base64_strings=False)]
        except UnicodeDecodeError:
            raise ApiError(400, "text must be UTF-8") from None
    else:
        raise ApiError(400, f"{h.name} generates text: use POST /v1/completions")
    if not items:
        raise ApiError(400, "the input tensor is empty")
    if len(items) > options.max_batch:
        raise ApiError(400, f"{len(items)} items, over the limit of {options.max_batch} per request")
    return items


async def classify(h: Hosted, items: list, top_k: Any, options: Options, metrics: Metrics) -> list[list[tuple[str, float]]]:
    """Run the classifier on a worker thread; past max_waiting requests in flight, QueueFullError (429)."""
    if top_k is None:
        top_k = 5
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ApiError(400, f"top_k must be a positive int, not {top_k!r}")
    h.line.enter()  # QueueFullError past max_waiting: 429, as for generation
    started = time.perf_counter()
    try:
        result = await anyio.to_thread.run_sync(lambda: h.model.classify(_checked(h, items, options), top_k=top_k))
    finally:
        h.line.leave()
    metrics.latency.labels(h.name, "classify").observe(time.perf_counter() - started)
    return result


def _checked(h: Hosted, items: list, options: Options) -> list:
    """Encoded images decoded into frames held to the server's pixel limit (text passes as it is)."""
    if h.task != "image-classification":
        return items
    from reelrt.runtime.tasks.image import load_frame  # OpenCV, only where an image bundle is served
    frames = [load_frame(item, h.model.preprocess.channels) for item in items]
    for frame in frames:
        if frame.shape[0] * frame.shape[1] > options.max_image_pixels:
            raise ApiError(400, f"a {frame.shape[1]}x{frame.shape[0]} image is over the limit of"
                                f" {options.max_image_pixels} pixels")
    return frames


def infer_response(h: Hosted, head: dict, results: list[list[tuple[str, float]]]) -> dict:
    k = len(results[0])
    return {"model_name": h.name, "model_version": "1", "id": str(head.get("id", "")),
            "outputs": [{"name": "labels", "datatype": "BYTES", "shape": [len(results), k],
                         "data": [label for row in results for label, _ in row]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [len(results), k],
                         "data": [p for row in results for _, p in row]}]}


async def infer(request: Request, body: bytes, h: Hosted, options: Options, metrics: Metrics) -> dict:
    head, inputs = decode_infer(body, request.headers.get("inference-header-content-length"))
    tensor, values = inputs[0]
    params = head.get("parameters") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "'parameters' must be an object")
    results = await classify(h, items_for(h, tensor, values, options), params.get("top_k"), options, metrics)
    return infer_response(h, head, results)


async def classify_form(request: Request, body: bytes, h: Hosted, options: Options, metrics: Metrics) -> dict:
    """POST /v1/classify: multipart `image=@file` (image bundles), or JSON {"text": str | [str]}."""
    kind = request.headers.get("content-type", "")
    top_k = request.query_params.get("top_k")
    if top_k is not None:
        top_k = int(top_k) if top_k.isdigit() else top_k
    if kind.startswith("multipart/form-data"):
        if h.task != "image-classification":
            raise ApiError(400, f"{h.name} classifies text: send JSON {{\"text\": ...}}")
        form = await _form(request, body)
        files = [f for f in form.getlist("image") if hasattr(f, "read")]
        if not files:
            raise ApiError(400, "send the image as a form file field named 'image' (curl -F image=@poster.jpg)")
        items = [await f.read() for f in files]
        single = len(items) == 1
    else:
        data = parse_json(body)
        top_k = data.get("top_k", top_k)
        if h.task == "text-classification":
            text = data.get("text")
            single = isinstance(text, str)
            items = [text] if single else text
            if not isinstance(items, list) or not items or not all(isinstance(t, str) for t in items):
                raise ApiError(400, "'text' must be a string or a non-empty list of strings")
        elif h.task == "image-classification":
            image = data.get("image")
            single = isinstance(image, str)
            tensor = {"name": "image", "shape": [1 if single else len(image or [])]}
            items = _bytes_elements([image] if single else image, tensor, base64_strings=True)
        else:
            raise ApiError(400, f"{h.name} generates text: use POST /v1/completions")
    if len(items) > options.max_batch:
        raise ApiError(400, f"{len(items)} items, over the limit of {options.max_batch} per request")
    results = await classify(h, items, top_k, options, metrics)
    labelled = [[{"label": label, "probability": p} for label, p in row] for row in results]
    return {"model": h.name, "predictions": labelled[0] if single else labelled}


async def _form(request: Request, body: bytes):
    """The multipart form of a body already read (and size-checked)."""
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    try:
        return await Request(request.scope, receive).form(max_files=64, max_fields=64)
    except Exception as e:
        raise ApiError(400, f"cannot read the multipart form: {e}") from None
