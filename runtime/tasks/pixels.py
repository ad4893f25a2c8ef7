"""Resizing and colour conversion of uint8 frames in numpy, for installs without OpenCV.

A game engine hands the runtime raw frames, so the base install leaves OpenCV out
(`reelrt[images]` brings it back, with file and encoded-byte decoding). These functions give
what OpenCV's uint8 code gives, bit for bit on the cases the tests draw: the same sample
positions and the same fixed-point arithmetic (11-bit weights for bilinear, OpenCV's
rounding for area averages and for grey levels), so a classifier's answers do not depend on
whether OpenCV is installed. They are slower than OpenCV's SIMD code (a 945x945 crop to
224x224 takes milliseconds, not a tenth of one), which is why `images` stays the fast path.
"""
from __future__ import annotations

import numpy as np

_COEF_BITS = 11                 # OpenCV's INTER_RESIZE_COEF_BITS
_ONE = 1 << _COEF_BITS
_GRAY_WEIGHTS = (3735, 19235, 9798)  # B, G, R in 1/2^15 (OpenCV's BGR2GRAY fixed point)


def resize_linear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR) for uint8 HxW or HxWxC."""
    y0, y1, b0, b1 = _linear_taps(img.shape[0], height, clamp_weights=False)
    x0, x1, a0, a1 = _linear_taps(img.shape[1], width, clamp_weights=True)
    used, at = np.unique(np.concatenate([y0, y1]), return_inverse=True)   # the rows the vertical taps read
    pixels = _hwc(img)[used]
    left, right = pixels[:, x0].astype(np.int32), pixels[:, x1].astype(np.int32)
    rows = left * a0[:, None] + right * a1[:, None]      # horizontal pass, rows x width x C
    top, bottom = rows[at[:height]] >> 4, rows[at[height:]] >> 4
    out = (((top * b0[:, None, None]) >> 16) + ((bottom * b1[:, None, None]) >> 16) + 2) >> 2
    return _like(img, np.clip(out, 0, 255).astype(np.uint8))


def resize_area(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for a uint8 frame being
    shrunk (OpenCV's area filter is bilinear when enlarging; the caller picks)."""
    h, w = img.shape[:2]
    pixels = _hwc(img)
    sy, sx = h / height, w / width
    if sy == int(sy) and sx == int(sx):  # whole cells: OpenCV's fast path
        sy, sx = int(sy), int(sx)
        cells = pixels[:height * sy, :width * sx].reshape(height, sy, width, sx, -1).sum((1, 3), dtype=np.int32)
        if sy == 2 and sx == 2:
            out = (cells + 2) >> 2
        else:
            out = np.rint(cells.astype(np.float32) * np.float32(1.0 / (sy * sx)))
    else:  # OpenCV sums in float32, tap by tap in source order: so do we, for the same roundings
        (xi, xw), (yi, yw) = _area_taps(w, width), _area_taps(h, height)
        rows = np.zeros((h, width, pixels.shape[2]), np.float32)
        for j in range(xi.shape[1]):
            rows += pixels[:, xi[:, j]] * xw[:, j, None]
        out = np.zeros((height, width, pixels.shape[2]), np.float32)
        for j in range(yi.shape[1]):
            out += yw[:, j, None, None] * rows[yi[:, j]]
        out = np.rint(out)
    return _like(img, np.clip(out, 0, 255).astype(np.uint8))


def convert(img: np.ndarray, source: str, target: str) -> np.ndarray:
    """cv2.cvtColor between GRAY, BGR, RGB, BGRA and RGBA sources and GRAY, BGR or RGB targets."""
    if source == target:
        return img
    if source == "GRAY":
        return np.repeat(img.reshape(*img.shape[:2], 1), 3, axis=2)
    blue, green, red = (0, 1, 2) if source.startswith("BGR") else (2, 1, 0)
    if target == "GRAY":
        b, g, r = (img[:, :, i].astype(np.int32) for i in (blue, green, red))
        wb, wg, wr = _GRAY_WEIGHTS
        return ((b * wb + g * wg + r * wr + (1 << 14)) >> 15).astype(np.uint8)
    order = (blue, green, red) if target == "BGR" else (red, green, blue)
    return img[:, :, list(order)]


def _linear_taps(src: int, dst: int, clamp_weights: bool) -> tuple[np.ndarray, ...]:
    """Source indices and 11-bit weights of the two taps of each output position, as OpenCV
    computes them: centres aligned ((d + 0.5) * scale - 0.5, in float32). At the borders OpenCV
    zeroes the weight horizontally but only clamps the row index vertically; both are kept."""
    f = ((np.arange(dst) + 0.5) * (src / dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s
    if clamp_weights:
        f[s < 0] = 0
        s[s < 0] = 0
        f[s >= src - 1] = 0
        s[s >= src - 1] = src - 1
    w1 = np.rint(f * _ONE).astype(np.int32)
    return np.clip(s, 0, src - 1), np.clip(s + 1, 0, src - 1), _ONE - w1, w1


def _area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's area filter for a non-integer shrink, as (dst, taps) source indices and float32
    weights in source order: each output cell averages the source pixels it covers, partial
    pixels by the fraction covered. Cells with fewer taps are padded with weight 0."""
    scale = src / dst
    cells = []
    for d in range(dst):
        start, end = d * scale, d * scale + scale
        cell = min(scale, src - start)
        first, last = int(np.ceil(start)), min(int(np.floor(end)), src - 1)
        first = min(first, last)
        taps = [(first - 1, (first - start) / cell)] if first - start > 1e-3 else []
        taps += [(s, 1.0 / cell) for s in range(first, last)]
        if end - last > 1e-3:
            taps.append((last, min(end - last, 1.0, cell) / cell))
        cells.append(taps)
    width = max(len(t) for t in cells)
    index = np.zeros((dst, width), np.int64)
    weight = np.zeros((dst, width), np.float32)
    for d, taps in enumerate(cells):
        for j, (s, a) in enumerate(taps):
            index[d, j], weight[d, j] = s, a
    return index, weight


def _hwc(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 3 else img[:, :, None]


def _like(img: np.ndarray, out: np.ndarray) -> np.ndarray:
    return out if img.ndim == 3 else out[:, :, 0]
