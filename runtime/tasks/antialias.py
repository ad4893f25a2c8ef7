"""PIL's resampling filters in numpy: what a transformers image processor's resize gives, bit for bit.

transformers' processors resize with PIL (`Image.resize(size, resample)`), which widens its filter
by the shrink factor (antialiasing) and computes in 22-bit fixed point, a horizontal pass rounded
to uint8 and then a vertical one. These functions reproduce that arithmetic (the coefficients,
their rounding, the uint8 intermediate, which passes run) for any window of the resized image, so
a centre crop costs the crop's pixels only, not the whole resized frame.

Speed: PIL's own `reducing_gap` scheme trades exactness for time. With a gap G, a shrink by s is
first averaged over whole cells of k = floor(s / G) pixels per axis (PIL's Image.reduce), then
the filter runs on the reduced image over the same geometry: the answer is PIL's filter convolved
with a k-pixel box, PIL's `Image.resize(size, filter, reducing_gap=G)` bit for bit. A bundle asks
for it in its preprocessing (`reducing_gap`); without one the resize is exact at any cost.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import numpy as np

_BITS = 22                          # PIL's PRECISION_BITS for 8-bit images
_HALF = 1 << (_BITS - 1)
_HAMMING_A, _HAMMING_B = float(np.float32(0.54)), float(np.float32(0.46))   # PIL writes 0.54f, 0.46f


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _hamming(x: float) -> float:
    x = abs(x)
    if x == 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    x *= math.pi
    return math.sin(x) / x * (_HAMMING_A + _HAMMING_B * math.cos(x))


def _bicubic(x: float) -> float:
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


# the manifest's names -> (PIL's filter, its support); pil-nearest samples one pixel, unfiltered
FILTERS: dict[str, tuple[Callable[[float], float], float]] = {
    "pil-box": (_box, 0.5), "pil-bilinear": (_bilinear, 1.0), "pil-hamming": (_hamming, 1.0),
    "pil-bicubic": (_bicubic, 2.0), "pil-lanczos": (_lanczos, 3.0)}
NAMES = ("pil-nearest", *FILTERS)
# PIL's resample numbers (as transformers stores them) -> the names above
PIL_NUMBERS = {0: "pil-nearest", 1: "pil-lanczos", 2: "pil-bilinear", 3: "pil-bicubic", 4: "pil-box", 5: "pil-hamming"}


@lru_cache(maxsize=64)
def taps(in_size: int, span: float, out_size: int, start: int, count: int,
         name: str) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (count, K) and 22-bit weights (count, K) of output pixels start..start+count-1
    when `span` input pixels (from 0; the input holds in_size) become out_size, as PIL's
    precompute_coeffs and normalize_coeffs_8bpc compute them. Unused taps have weight 0."""
    if name == "pil-nearest":  # PIL's ImagingScaleAffine: centre positions accumulated in double
        step = span / out_size
        positions = np.cumsum(np.r_[step * 0.5, np.full(out_size - 1, step)])[start:start + count]
        index = np.minimum(np.floor(positions).astype(np.int64), in_size - 1)[:, None]
        return index, np.full((count, 1), 1 << _BITS, np.int64)
    filt, support = FILTERS[name]
    scale = span / out_size
    filterscale = max(scale, 1.0)
    support *= filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    index = np.zeros((count, ksize), np.int64)
    weight = np.zeros((count, ksize), np.int64)
    for row, xx in enumerate(range(start, start + count)):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ws = [filt((x + xmin - center + 0.5) / filterscale) for x in range(xmax)]
        total = 0.0
        for w in ws:
            total += w
        if total != 0.0:
            ws = [w / total for w in ws]
        index[row, :xmax] = np.arange(xmin, xmin + xmax)
        index[row, xmax:] = xmin
        weight[row, :xmax] = [int(-0.5 + w * (1 << _BITS)) if w < 0 else int(0.5 + w * (1 << _BITS)) for w in ws]
    return index, weight


def _pass(pixels: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """One of PIL's passes along `axis` (0 rows, 1 columns) of an H x W x C uint8 image: the taps of all
    outputs gathered at once and summed by one batched matrix product, in float64, where these integer
    sums (< 2^31) are exact, then rounded and clipped as PIL's clip8 does."""
    if index.shape[1] == 1:   # pil-nearest: a gather
        return np.take(pixels, index[:, 0], axis=axis)
    lines = pixels if axis == 0 else pixels.transpose(1, 0, 2)
    flat = np.ascontiguousarray(lines).reshape(lines.shape[0], -1)
    sums = np.matmul(weight[:, None, :].astype(np.float64), flat[index].astype(np.float64))[:, 0]
    out = np.clip(np.floor((sums + _HALF) * (1.0 / (1 << _BITS))), 0, 255).astype(np.uint8)
    out = out.reshape(index.shape[0], lines.shape[1], pixels.shape[2])
    return out if axis == 0 else out.transpose(1, 0, 2)


def resize_window(frame: np.ndarray, full: tuple[int, int], window: tuple[int, int, int, int], name: str,
                  reducing_gap: float | None = None,
                  reduce: Callable[[np.ndarray, int, int], np.ndarray] | None = None) -> np.ndarray:
    """Rows top..top+height-1, columns left..left+width-1 of PIL's `Image.resize((W, H), filter,
    reducing_gap=reducing_gap)` of an h x w (x C) uint8 frame, with full = (H, W) and
    window = (top, left, height, width).

    reducing_gap: PIL's: first average whole cells of floor(scale / gap) pixels per axis (where that is
    2 or more), then resample the reduced image over the same geometry. None: exact at any cost.
    reduce(img, ky, kx): that average for an image of whole cells (default box_reduce, PIL's own;
    the runtime passes OpenCV's area filter where installed, which rounds ties to even)."""
    pixels = frame if frame.ndim == 3 else frame[:, :, None]
    (h, w), (full_h, full_w) = pixels.shape[:2], full
    top, left, height, width = window
    ky = kx = 1
    if reducing_gap is not None and name != "pil-nearest":
        ky, kx = max(1, int(h / full_h / reducing_gap)), max(1, int(w / full_w / reducing_gap))
    rows_in, cols_in = -(-h // ky), -(-w // kx)
    # PIL hands the reduced image's box to C as float32
    y_index, y_weight = taps(rows_in, _f32(h / ky), full_h, top, height, name)
    x_index, x_weight = taps(cols_in, _f32(w / kx), full_w, left, width, name)
    vertical = full_h != h or ky > 1
    horizontal = full_w != w or kx > 1
    # the (reduced) rows and columns the window reads
    r0, r1 = (int(y_index.min()), int(y_index.max()) + 1) if vertical else (top, top + height)
    c0, c1 = (int(x_index.min()), int(x_index.max()) + 1) if horizontal else (left, left + width)
    part = pixels[r0 * ky:min(h, r1 * ky), c0 * kx:min(w, c1 * kx)]
    if ky > 1 or kx > 1:
        if part.shape[0] % ky or part.shape[1] % kx:   # partial cells at the frame's edge
            part = _edge_cells(part, ky, kx)
        else:
            part = (reduce or box_reduce)(part, ky, kx)
            part = part if part.ndim == 3 else part[:, :, None]
    if horizontal:
        part = _pass(part, x_index - c0, x_weight, axis=1)
    if vertical:
        part = _pass(part, y_index - r0, y_weight, axis=0)
    return part if frame.ndim == 3 else part[:, :, 0]


def box_reduce(img: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """The mean of each ky x kx cell of an H x W x C uint8 image (H, W multiples of ky, kx), as PIL's
    Image.reduce computes it."""
    return _mean(_cell_sums(img, ky, kx), np.uint64(ky * kx))


def _mean(sums: np.ndarray, counts) -> np.ndarray:
    """PIL's division of a cell's sum by its pixel count: ((sum + count // 2) * m) >> 24 with the 24-bit
    reciprocal m = (uint32)(2^32 / (256 * count)), computed in float32 as PIL's division_UINT32 does."""
    counts = np.asarray(counts, np.uint64)
    reciprocal = (np.float32(2.0 ** 32) / (np.float32(256) * counts.astype(np.float32))).astype(np.uint64)
    return (((sums.astype(np.uint64) + counts // 2) * reciprocal) >> np.uint64(24)).astype(np.uint8)


def _cell_sums(img: np.ndarray, ky: int, kx: int) -> np.ndarray:
    acc = img[0::ky].astype(np.uint32)
    for i in range(1, ky):
        acc += img[i::ky]
    total = acc[:, 0::kx].copy()
    for i in range(1, kx):
        total += acc[:, i::kx]
    return total


def _edge_cells(part: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """box_reduce of an image whose last row and column of cells may be partial: those average the pixels
    they hold, as PIL's reduce does at the image's edge."""
    rows, cols = -(-part.shape[0] // ky) * ky, -(-part.shape[1] // kx) * kx
    padded = np.zeros((rows, cols, part.shape[2]), np.uint8)
    padded[:part.shape[0], :part.shape[1]] = part
    present = np.zeros((rows, cols, 1), np.uint8)
    present[:part.shape[0], :part.shape[1]] = 1
    return _mean(_cell_sums(padded, ky, kx), _cell_sums(present, ky, kx))


def _f32(value: float) -> float:
    return float(np.float32(value))
