"""Generic torch -> ONNX export: graph, validation against PyTorch, bundle. Any family reuses it.

`export_module(module, example_input, out, ...)` exports any `nn.Module`:
1. torch.onnx's dynamo exporter at opset 18 with a dynamic batch axis. The exporter
   specialises an axis whose example size is 1, so the batch axis is traced at size 2
   whatever the example holds; validation then runs at batch 1, 3 and 8.
2. BatchNorm is folded into the preceding Conv (the exporter's optimiser does it for
   eval-mode modules; what it leaves is folded here) and the graph is checked to hold none.
3. The ONNX graph is compared with PyTorch under ONNX Runtime on random inputs at each
   validation batch and on the caller's real inputs; out of tolerance raises
   ValidationError and nothing is written.
4. The bundle holds model.onnx, the real inputs and PyTorch's outputs for them under
   reference/ (npz, never pickle: quantize and compile check themselves against these),
   and a manifest with the caller's preprocessing, labels and family facts.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.bundle.layout import REFERENCE_INPUTS, REFERENCE_OUTPUTS
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec

from .provenance import provenance
from reelrt.runtime.validation import ValidationError, check, compare

OPSET = 18
VALIDATION_BATCHES = (1, 3, 8)
_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8", 3: "int8", 9: "bool"}

Feeds = dict[str, np.ndarray]


def export_module(module, example_input, out: str | os.PathLike, *,
                  family: str = "cnn", task: str = "image-classification",
                  input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                  real_inputs: Feeds | None = None, random_input: Callable[[int], Feeds] | None = None,
                  preprocessing: dict | None = None, labels: Sequence[str] = (),
                  source: str = "user module", checkpoint: str | os.PathLike | None = None,
                  extra: dict | None = None, top1: bool = True) -> Path:
    """Export `module` (eval mode) to a validated fp32 bundle at `out` and return its path.

    example_input: a tensor or tuple of tensors; axis 0 of each is the dynamic batch.
    real_inputs: named arrays of real data (images as the runtime preprocesses them),
      checked with top-1 agreement (when `top1`) and stored as the bundle's reference set.
    random_input(batch): named random arrays; default: standard normal / small ints
      shaped like the example.
    """
    import tempfile

    import torch

    module = module.eval()
    examples = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if len(examples) != len(input_names):
        raise ValueError(f"{len(examples)} example inputs but {len(input_names)} input names")
    random_input = random_input or _random_like(examples, input_names)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        to_onnx(module, examples, onnx_path, input_names, output_names)
        report = validate_against_torch(module, onnx_path, input_names, random_input, real_inputs, top1)
        reference_out = _torch_outputs(module, real_inputs, input_names, output_names) if real_inputs else None
        with BundleWriter(out) as w:
            os.replace(onnx_path, w.dir / "model.onnx")
            if real_inputs:
                (w.dir / "reference").mkdir()
                np.savez(w.dir / REFERENCE_INPUTS, **real_inputs)
                np.savez(w.dir / REFERENCE_OUTPUTS, **reference_out)
            ins, outs = graph_specs(w.dir / "model.onnx")
            return w.commit(Manifest(
                family=family, task=task, precision="fp32", model="model.onnx", inputs=ins, outputs=outs,
                artifacts={}, preprocessing=dict(preprocessing or {}), labels=list(labels),
                provenance=provenance(source, checkpoint, opset=OPSET),
                validation=report, extra=dict(extra or {})))


def to_onnx(module, examples: Sequence, path: Path, input_names: Sequence[str], output_names: Sequence[str]) -> None:
    """Dynamo export with a dynamic batch axis, BatchNorm folded, saved to `path`."""
    import onnx
    import torch

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # torchvision ops
    batch = torch.export.Dim("batch", min=1, max=4096)
    traced = tuple(_at_batch(t, 2) for t in examples)   # batch 1 would be specialised away
    program = torch.onnx.export(module, traced, dynamo=True, input_names=list(input_names),
                                output_names=list(output_names), dynamic_shapes=tuple({0: batch} for _ in traced),
                                opset_version=OPSET, optimize=True, verbose=False)
    model = fold_batchnorm(program.model_proto)
    large = model.ByteSize() > (1 << 31) - (1 << 26)
    onnx.save_model(model, str(path), save_as_external_data=large, location=path.name + ".data")


def fold_batchnorm(model):
    """Fold BatchNormalization into the preceding Conv (or Gemm); raise if any BatchNorm survives."""
    import onnx_ir as ir
    from onnxscript import rewriter
    from onnxscript.rewriter.rules import common

    if any(n.op_type == "BatchNormalization" for n in model.graph.node):
        graph = ir.serde.deserialize_model(model)
        rewriter.rewrite(graph, pattern_rewrite_rules=[
            common.fuse_batchnorm_into_conv_rule, common.fuse_batchnorm_into_conv_transpose_rule,
            common.fuse_batchnorm_into_gemm_rule])
        model = ir.serde.serialize_model(graph)
    left = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    if left:
        raise ValidationError(f"{left} BatchNormalization node(s) could not be folded: is the module in eval mode,"
                              " and does each BatchNorm follow a Conv or Gemm?")
    return model


def validate_against_torch(module, onnx_path: Path, input_names: Sequence[str], random_input: Callable[[int], Feeds],
                           real_inputs: Feeds | None, top1: bool) -> dict[str, Any]:
    """Compare ONNX Runtime with PyTorch; raise ValidationError out of the fp32 tolerance."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    report: dict[str, Any] = {"reference": "pytorch", "precision": "fp32"}
    for batch in VALIDATION_BATCHES:
        feeds = random_input(batch)
        cmp = compare(_torch_outputs(module, feeds, input_names, output_names)[output_names[0]],
                             session.run(output_names[:1], feeds)[0])
        report[f"random_batch{batch}"] = check(cmp, "fp32", f"random inputs at batch {batch}", top1=False).to_json()
    if real_inputs:
        cmp = compare(_torch_outputs(module, real_inputs, input_names, output_names)[output_names[0]],
                             session.run(output_names[:1], real_inputs)[0])
        report["real_inputs"] = check(cmp, "fp32", "real inputs", top1=top1).to_json()
    return report


def graph_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The manifest's input and output specs, read from the ONNX graph itself."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        dims = tuple(d.dim_param if d.dim_param else d.dim_value for d in t.shape.dim)
        return TensorSpec(v.name, _ONNX_DTYPES[t.elem_type], dims)

    initializers = {i.name for i in graph.initializer}
    return [spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output]


def _torch_outputs(module, feeds: Feeds, input_names: Sequence[str], output_names: Sequence[str]) -> Feeds:
    import torch

    with torch.inference_mode():
        result = module(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names))
    results = result if isinstance(result, (tuple, list)) else (result,)
    return {name: r.detach().float().numpy() for name, r in zip(output_names, results)}


def _at_batch(t, batch: int):
    import torch

    return torch.cat([t[:1]] * batch)


def _random_like(examples: Sequence, names: Sequence[str]) -> Callable[[int], Feeds]:
    def make(batch: int) -> Feeds:
        rng = np.random.default_rng(batch)
        feeds = {}
        for name, t in zip(names, examples):
            shape = (batch, *t.shape[1:])
            if t.dtype.is_floating_point:
                feeds[name] = rng.standard_normal(shape).astype(np.float32)
            else:
                feeds[name] = rng.integers(0, max(2, int(t.max()) + 1), shape).astype(str(t.dtype).split(".")[-1])
        return feeds
    return make
