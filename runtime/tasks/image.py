"""ImageClassifier: frames, files or encoded bytes in, top-k labels with probabilities out.

Frames arrive the way OpenCV and video decoders hand them over: HxWx3 uint8 BGR (RGB with
`rgb=True`), HxW grayscale or HxWx4 with alpha. OpenCV is optional (`reelrt[images]`): it
decodes files and encoded bytes and resizes fastest; without it raw frames classify the same
(runtime/tasks/pixels.py does OpenCV's resize and colour arithmetic in numpy, bit for bit), and
a file or encoded image raises InputError naming the extra. Preprocessing follows the bundle's
manifest (`preprocessing`: size, resize/crop policy, interpolation, reducing gap, scale,
mean/std, channel order, NCHW layout). With OpenCV's filters it crops before it resizes, so a
1080p frame costs one small resize and colour conversion of the region the model will see;
with PIL's (`pil-*`, what transformers' processors use) it computes only the window of PIL's
resize of the whole frame that the centre crop keeps (runtime/tasks/antialias.py). It writes
into an input buffer reused from call to call. Interpolation "linear" is the ImageNet models'
default: on this machine OpenCV's area filter took 5 ms to shrink the 945x945 centre of a
1080p frame to 224x224, bilinear 0.12 ms, against a model that runs in 2-4 ms.

Limits: a frame holds at most MAX_FRAME_PIXELS pixels (8192 x 8192; 8K video is 7680 x 4320)
and an image file at most 256 MiB; larger ones are refused with InputError before any work.
Encoded images are checked against the same pixel limit from their header, before OpenCV
allocates the decoded frame (where reelrt imports OpenCV first, see _OPENCV_PIXEL_LIMIT), so a
small file declaring a huge image (a decompression bomb) costs nothing.

Threads: one ImageClassifier may be shared by any number of threads. Each thread gets its own
input buffer (threading.local), and ONNX Runtime runs one session from many threads.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Sequence

MAX_FRAME_PIXELS = 1 << 26
# OpenCV reads this once, when it is first imported: it refuses to decode an image whose header
# declares more pixels (its own default is 2^30, 3 GiB of BGR). A host application that set it,
# or imported OpenCV before reelrt, keeps its own value; check_frame still refuses the result.
_OPENCV_PIXEL_LIMIT = os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_FRAME_PIXELS))

try:
    import cv2  # noqa: E402  (after the pixel limit above)
except ImportError:  # the base install: raw frames only
    cv2 = None
import numpy as np  # noqa: E402

from reelrt.runtime.backends.session import ThreadPolicy
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.bundle.manifest import Manifest
from reelrt.runtime.errors import BackendUnavailableError, BundleError, InputError
from reelrt.runtime.tasks import antialias, pixels
from reelrt.runtime.tasks.model import Model
from reelrt.runtime.tasks.ranking import Head, read_head

Prediction = list[tuple[str, float]]

# (channels of the frame, frame is RGB) -> the frame's colour layout
_LAYOUTS = {(1, False): "GRAY", (1, True): "GRAY", (3, False): "BGR", (3, True): "RGB",
            (4, False): "BGRA", (4, True): "RGBA"}
_ORDERS = ("RGB", "BGR", "GRAY")
# the manifest's OpenCV interpolation names -> OpenCV's flags (numpy has area and linear only); the
# PIL filters (antialias.NAMES) are numpy's own, with OpenCV's area filter for their whole-factor reduction
_INTERPOLATION = {"area": "INTER_AREA", "linear": "INTER_LINEAR", "cubic": "INTER_CUBIC", "nearest": "INTER_NEAREST",
                  "lanczos": "INTER_LANCZOS4"}
_NUMPY_RESIZE = {"area": pixels.resize_area, "linear": pixels.resize_linear}
_MAX_FILE_BYTES = 256 * 1024 * 1024


class Preprocessor:
    """The manifest's preprocessing policy as a function of a frame, writing (C, H, W) float32."""

    def __init__(self, policy: dict[str, Any]):
        try:
            self.height, self.width = (int(v) for v in policy["size"])
            self.order = policy.get("channel_order", "RGB")
            self.resize = policy.get("resize")
            self.crop = policy.get("crop", "center" if self.resize else "none")
            self.interpolation = policy.get("interpolation", "area")
            self.reducing_gap = policy.get("reducing_gap")
            if self.reducing_gap is not None and not (isinstance(self.reducing_gap, (int, float))
                                                      and self.reducing_gap >= 1):
                raise ValueError("reducing_gap must be a number of at least 1")
            scale = float(policy.get("scale", 255.0))
            self.channels = 1 if self.order == "GRAY" else 3
            mean = np.asarray(policy.get("mean", [0.0] * self.channels), np.float32) * scale
            std = np.asarray(policy.get("std", [1.0] * self.channels), np.float32) * scale
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"manifest preprocessing is malformed ({e!r}): {policy}") from None
        if self.order not in _ORDERS or policy.get("layout", "NCHW") != "NCHW" or self.crop not in ("center", "none"):
            raise BundleError(f"unsupported preprocessing {policy}: channel_order RGB/BGR/GRAY, layout NCHW,"
                              " crop center/none")
        self.pil = self.interpolation in antialias.NAMES
        if self.interpolation not in _INTERPOLATION and not self.pil:
            raise BundleError(f"unsupported preprocessing interpolation {self.interpolation!r}:"
                              f" one of {sorted(_INTERPOLATION) + list(antialias.NAMES)}")
        if cv2 is None and self.interpolation not in _NUMPY_RESIZE and not self.pil:
            raise BackendUnavailableError(f"this bundle resizes with {self.interpolation!r} interpolation, which needs"
                                          " OpenCV: pip install 'reelrt[images]'")
        if self.crop == "center" and (not isinstance(self.resize, (int, float)) or self.resize <= 0):
            raise BundleError(f"preprocessing crop 'center' needs a positive 'resize' (the shorter side): {policy}")
        if self.pil and self.crop == "center" and (self.resize != int(self.resize) or self.resize < max(self.height,
                                                                                                      self.width)):
            raise BundleError(f"preprocessing with {self.interpolation} scales the shorter side to a whole 'resize' of"
                              f" at least the size, then crops: {policy}")
        if mean.shape != (self.channels,) or std.shape != (self.channels,) or not (std > 0).all():
            raise BundleError(f"preprocessing mean/std must hold {self.channels} values (std > 0): {policy}")
        self.mean = mean.reshape(-1, 1, 1)
        self.inv_std = (1.0 / std).astype(np.float32).reshape(-1, 1, 1)

    def resized(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """For the PIL filters: the (H, W) the whole h x w frame is resized to, and the (top, left) of the
        model's window in it. The shorter side becomes `resize`, the longer int(resize * long / short),
        and the crop's offsets are floored, as transformers' image processors compute them."""
        if self.crop == "none":
            return (self.height, self.width), (0, 0)
        edge = int(self.resize)
        full = (edge, int(edge * w / h)) if h <= w else (int(edge * h / w), edge)
        return full, ((full[0] - self.height) // 2, (full[1] - self.width) // 2)

    def region(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The (y0, y1, x0, x1) window of an h x w frame that the model sees (OpenCV filters: cropped in
        the frame, then resized)."""
        if self.crop == "none":
            return 0, h, 0, w
        scale = float(self.resize) / min(h, w)
        ch = min(h, max(1, round(self.height / scale)))
        cw = min(w, max(1, round(self.width / scale)))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        return y0, y0 + ch, x0, x0 + cw

    def batch(self, frames: Sequence[np.ndarray], rgb: bool = False) -> np.ndarray:
        """A new (N, C, H, W) float32 array from uint8 frames (for datasets, not the hot path)."""
        out = np.empty((len(frames), self.channels, self.height, self.width), np.float32)
        for frame, slot in zip(frames, out):
            self(check_frame(frame), rgb, slot)
        return out

    def __call__(self, frame: np.ndarray, rgb: bool, out: np.ndarray) -> None:
        if self.pil:
            full, (top, left) = self.resized(*frame.shape[:2])
            window = antialias.resize_window(frame, full, (top, left, self.height, self.width), self.interpolation,
                                             self.reducing_gap, reduce=_box_reduce if cv2 is not None else None)
        else:
            y0, y1, x0, x1 = self.region(*frame.shape[:2])
            window = frame[y0:y1, x0:x1]
        if window.shape[:2] != (self.height, self.width):
            shrinking = window.shape[0] >= self.height and window.shape[1] >= self.width
            if shrinking and self.reducing_gap is not None and self.interpolation != "nearest":
                window = _prereduce(window, self.height, self.width, self.reducing_gap)
            window = _resize(window, self.width, self.height, self.interpolation if shrinking else "linear")
        layout = _LAYOUTS[(1 if window.ndim == 2 else window.shape[2], rgb)]
        if layout != self.order:
            window = (cv2.cvtColor(window, getattr(cv2, f"COLOR_{layout}2{self.order}")) if cv2 is not None
                      else pixels.convert(window, layout, self.order))
        chw = window.reshape(self.height, self.width, self.channels).transpose(2, 0, 1)
        np.subtract(chw, self.mean, out=out, dtype=np.float32)
        np.multiply(out, self.inv_std, out=out)


def _prereduce(window: np.ndarray, height: int, width: int, gap: float) -> np.ndarray:
    """The region averaged over whole cells of floor(scale / gap) pixels per axis, before the filter
    resizes the rest (the manifest's reducing_gap, for the OpenCV filters); the region is first trimmed
    evenly to whole cells, losing less than a cell."""
    ky, kx = (max(1, int(n / m / gap)) for n, m in zip(window.shape[:2], (height, width)))
    if ky == 1 and kx == 1:
        return window
    h, w = window.shape[0] // ky * ky, window.shape[1] // kx * kx
    y0, x0 = (window.shape[0] - h) // 2, (window.shape[1] - w) // 2
    return _box_reduce(window[y0:y0 + h, x0:x0 + w], ky, kx)


def _box_reduce(img: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """The rounded mean of each ky x kx cell (whole cells): OpenCV's area filter, else numpy sums."""
    if cv2 is None:
        return antialias.box_reduce(img if img.ndim == 3 else img[:, :, None], ky, kx).reshape(
            img.shape[0] // ky, img.shape[1] // kx, *img.shape[2:])
    return cv2.resize(img, (img.shape[1] // kx, img.shape[0] // ky), interpolation=cv2.INTER_AREA)


def _resize(window: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    if cv2 is None:
        return _NUMPY_RESIZE[interpolation](window, width, height)
    return cv2.resize(window, (width, height), interpolation=getattr(cv2, _INTERPOLATION[interpolation]))


class ImageClassifier(Model):
    """Classify images with a CNN bundle.

    clf.classify(frame)                  -> [(label, prob), ...] for one image
    clf.classify([f1, "a.jpg", png])     -> one such list per image
    clf.classify(frames_nhwc)            -> a uint8 (N, H, W, C) array is a batch

    Thread-safe: share one classifier between threads. Each thread reuses its own input
    buffer, so concurrent calls never see each other's pixels and a single thread allocates
    nothing per call.
    """

    submits = "classify"

    def __init__(self, bundle: Bundle, device: str = "auto", threads: ThreadPolicy | int | None = None):
        # every check of the bundle comes before the session: a bad bundle never reaches a backend
        m = bundle.manifest
        self.preprocess, self.head = self.check_manifest(m)
        self.input_name = m.inputs[0].name
        self.output_name = m.outputs[0].name
        self.labels = m.labels
        self._local = threading.local()  # .buffer: this thread's (N, C, H, W) input buffer
        super().__init__(bundle, device=device, threads=threads)

    @classmethod
    def check_manifest(cls, m: Manifest) -> tuple[Preprocessor, Head]:
        """What the reader requires of an image-classification manifest (writers check with it too)."""
        if len(m.inputs) != 1 or len(m.outputs) < 1:
            raise BundleError("an image classifier bundle has one input and a logits output")
        preprocess = Preprocessor(m.preprocessing)
        shape = m.inputs[0].shape
        made = (preprocess.channels, preprocess.height, preprocess.width)
        if len(shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(shape[1:], made)):
            raise BundleError(f"preprocessing makes (N, {preprocess.channels}, {preprocess.height},"
                              f" {preprocess.width}) inputs but the graph takes {list(m.inputs[0].shape)}")
        return preprocess, read_head(m.head, m.outputs[0].shape[-1], m.labels)

    def classify(self, images: Any, top_k: int = 5, rgb: bool = False) -> Prediction | list[Prediction]:
        """Top-k (label, probability) per image; one list for one image, a list of lists for a batch."""
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be a positive int, got {top_k!r}")
        single, items = _as_items(images)
        probs = self.head.probabilities(self.logits(items, rgb=rgb))
        k = min(top_k, probs.shape[1])
        results = []
        for row in probs:
            results.append([(self._label(int(i)), float(row[i])) for i in self.head.rank(row, k)])
        return results[0] if single else results

    def logits(self, images: Any, rgb: bool = False) -> np.ndarray:
        """Raw (N, classes) logits for one image or a batch, preprocessed as the manifest says."""
        _, items = _as_items(images)
        batch = self._batch(len(items))
        for i, item in enumerate(items):
            try:
                frame = load_frame(item, self.preprocess.channels)
            except InputError as e:
                raise InputError(f"image {i} of {len(items)}: {e}" if len(items) > 1 else str(e)) from None
            # rgb describes caller frames; decoded files and bytes are BGR, as OpenCV decodes them
            self.preprocess(frame, rgb and isinstance(item, np.ndarray), batch[i])
        return self.run({self.input_name: batch})[self.output_name]

    def _batch(self, n: int) -> np.ndarray:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or buffer.shape[0] < n:
            p = self.preprocess
            buffer = self._local.buffer = np.empty((n, p.channels, p.height, p.width), np.float32)
        return buffer[:n]

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)


def _as_items(images: Any) -> tuple[bool, Sequence[Any]]:
    """(was it a single image, the images as a sequence)."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise InputError("the batch of frames is empty (shape %s)" % (images.shape,))
            return False, list(images)
        return True, [images]
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview)):
        return True, [images]
    if isinstance(images, Iterable):
        items = list(images)
        if not items:
            raise InputError("no images given (an empty list)")
        return False, items
    raise InputError(f"cannot classify a {type(images).__name__}: pass a uint8 frame, a file path, encoded"
                     " image bytes, or a list of these")


def load_frame(item: Any, channels: int) -> np.ndarray:
    """A uint8 HxW or HxWxC frame from an array, a file path or encoded bytes; InputError otherwise."""
    if isinstance(item, np.ndarray):
        return check_frame(item)
    if cv2 is None and isinstance(item, (bytes, bytearray, memoryview, str, os.PathLike)):
        raise InputError("decoding image files and encoded bytes needs OpenCV: pip install 'reelrt[images]',"
                         " or pass decoded uint8 frames")
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = np.frombuffer(item, np.uint8)
        what = "the image bytes"
    elif isinstance(item, (str, os.PathLike)):
        data = _read_file(os.fspath(item))
        what = f"image file {os.fspath(item)!r}"
    else:
        raise InputError(f"cannot read an image from a {type(item).__name__}")
    if data.size == 0:
        raise InputError(f"{what} is empty")
    try:
        frame = cv2.imdecode(data, flag)
    except cv2.error as e:  # OpenCV's own checks, e.g. a header declaring more than the pixel limit
        raise InputError(f"{what} could not be decoded ({str(e).strip().splitlines()[-1]}); images are limited"
                         f" to {MAX_FRAME_PIXELS} pixels") from None
    if frame is None:
        raise InputError(f"{what} could not be decoded: corrupt, truncated or not an image format OpenCV reads")
    return check_frame(frame)


def check_frame(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        raise InputError(f"frames must be uint8 (as OpenCV and video decoders give them), got {frame.dtype}")
    if frame.ndim not in (2, 3):
        raise InputError(f"a frame must be HxW or HxWxC, got shape {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        raise InputError(f"a frame must have 1, 3 or 4 channels, got {frame.shape[2]} (shape {frame.shape})")
    if frame.size == 0:
        raise InputError(f"the frame is empty (shape {frame.shape})")
    if frame.shape[0] * frame.shape[1] > MAX_FRAME_PIXELS:
        raise InputError(f"the frame is {frame.shape[1]}x{frame.shape[0]}, over the limit of {MAX_FRAME_PIXELS}"
                         " pixels (as many as 8192x8192): scale it down first")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    return frame


def _read_file(path: str) -> np.ndarray:
    try:
        size = os.path.getsize(path)
        if size > _MAX_FILE_BYTES:
            raise InputError(f"image file {path!r} is {size} bytes, over the {_MAX_FILE_BYTES}-byte limit")
        return np.fromfile(path, np.uint8)
    except FileNotFoundError:
        raise InputError(f"image file {path!r} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{path!r} is a directory, not an image file") from None
    except OSError as e:
        raise InputError(f"cannot read image file {path!r}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. a NUL byte in the path
        raise InputError(f"cannot read image file {path!r}: {e}") from None

