// Image classification (docs/bundle-spec.md, section 4): a raw RGB or RGBA frame to ranked labels.
import ort from "onnxruntime-node";

import { BundleError } from "./bundle.js";
import { ranked, softmax } from "./ranking.js";

/** Round half to even, as Python's round() and OpenCV's saturating casts do. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const clampByte = (v) => Math.min(255, Math.max(0, roundHalfEven(v)));

/** The manifest's preprocessing policy with the spec's defaults filled in. */
export function policy(p) {
  if (!Array.isArray(p?.size) || p.size.length !== 2) throw new BundleError("preprocessing.size must be [H, W]");
  const order = p.channel_order ?? "RGB";
  const channels = order === "GRAY" ? 1 : 3;
  const resize = p.resize ?? null;
  const out = {
    height: p.size[0], width: p.size[1], order, channels, resize,
    crop: p.crop ?? (resize ? "center" : "none"),
    interpolation: p.interpolation ?? "area",
    scale: p.scale ?? 255,
    mean: p.mean ?? Array(channels).fill(0),
    std: p.std ?? Array(channels).fill(1),
  };
  if (!["RGB", "BGR", "GRAY"].includes(order) || (p.layout ?? "NCHW") !== "NCHW" || !["center", "none"].includes(out.crop)) {
    throw new BundleError(`unsupported preprocessing ${JSON.stringify(p)}`);
  }
  if (out.mean.length !== channels || out.std.length !== channels) throw new BundleError("mean/std need one value per channel");
  if (!["area", "linear"].includes(out.interpolation) || (p.reducing_gap ?? null) !== null) {
    throw new BundleError(`interpolation ${JSON.stringify(out.interpolation)}${p.reducing_gap ? ` with reducing_gap ${p.reducing_gap}` : ""} is not implemented by this client (area, linear; no reducing_gap)`);
  }
  return out;
}

/** Step 1: the [y0, y1, x0, x1) window of an h x w frame the model sees (crop before resize). */
export function region(pol, h, w) {
  if (pol.crop === "none") return [0, h, 0, w];
  const s = pol.resize / Math.min(h, w);
  const ch = Math.min(h, Math.max(1, roundHalfEven(pol.height / s)));
  const cw = Math.min(w, Math.max(1, roundHalfEven(pol.width / s)));
  const y0 = Math.floor((h - ch) / 2), x0 = Math.floor((w - cw) / 2);
  return [y0, y0 + ch, x0, x0 + cw];
}

/** Step 2, bilinear with half-pixel centres: per output index, the two source indices and the weight of the second. */
function linearTaps(inSize, outSize) {
  const taps = [];
  const scale = inSize / outSize;
  for (let d = 0; d < outSize; d++) {
    let f = (d + 0.5) * scale - 0.5;
    let s = Math.floor(f);
    f -= s;
    if (s < 0) { s = 0; f = 0; }
    if (s >= inSize - 1) { s = inSize - 1; f = 0; }
    taps.push([s, Math.min(s + 1, inSize - 1), f]);
  }
  return taps;
}

/** Step 2, area: per output index, the source indices it covers and their covered fractions. */
function areaTaps(inSize, outSize) {
  const taps = [];
  const scale = inSize / outSize;
  for (let d = 0; d < outSize; d++) {
    const start = d * scale, end = Math.min(inSize, (d + 1) * scale);
    const cover = [];
    for (let s = Math.floor(start); s < Math.ceil(end - 1e-9); s++) {
      const w = Math.min(end, s + 1) - Math.max(start, s);
      if (w > 1e-9) cover.push([s, w / scale]);
    }
    taps.push(cover);
  }
  return taps;
}

/** Step 2: resize a uint8 window (rows x cols x c, interleaved) to outH x outW. */
export function resize(src, rows, cols, c, outH, outW, interpolation) {
  const out = new Uint8Array(outH * outW * c);
  if (interpolation === "area") {
    const ty = areaTaps(rows, outH), tx = areaTaps(cols, outW);
    for (let y = 0; y < outH; y++) for (let x = 0; x < outW; x++) for (let k = 0; k < c; k++) {
      let v = 0;
      for (const [sy, wy] of ty[y]) for (const [sx, wx] of tx[x]) v += wy * wx * src[(sy * cols + sx) * c + k];
      out[(y * outW + x) * c + k] = clampByte(v);
    }
  } else if (interpolation === "linear") {
    const ty = linearTaps(rows, outH), tx = linearTaps(cols, outW);
    for (let y = 0; y < outH; y++) {
      const [y0, y1, fy] = ty[y];
      for (let x = 0; x < outW; x++) {
        const [x0, x1, fx] = tx[x];
        for (let k = 0; k < c; k++) {
          const p = (yy, xx) => src[(yy * cols + xx) * c + k];
          const v = (1 - fy) * ((1 - fx) * p(y0, x0) + fx * p(y0, x1)) + fy * ((1 - fx) * p(y1, x0) + fx * p(y1, x1));
          out[(y * outW + x) * c + k] = clampByte(v);
        }
      }
    }
  } else {
    throw new BundleError(`interpolation ${JSON.stringify(interpolation)} is not implemented by this client (area, linear)`);
  }
  return out;
}

/**
 * Steps 1-5 for one frame: `data` holds height x width x channels bytes, RGB or RGBA (alpha
 * dropped). Writes the [C, H, W] float32 slice into `out` at `offset`.
 */
export function preprocess(pol, { data, width, height, channels }, out, offset = 0) {
  if (![3, 4].includes(channels) || data.length !== width * height * channels) {
    throw new TypeError(`a frame is width x height x 3 (RGB) or x 4 (RGBA) bytes; got ${data.length} bytes for ${width}x${height}x${channels}`);
  }
  const [y0, y1, x0, x1] = region(pol, height, width);
  let rows = y1 - y0, cols = x1 - x0;
  let win = new Uint8Array(rows * cols * channels);
  for (let y = 0; y < rows; y++) win.set(data.subarray(((y0 + y) * width + x0) * channels, ((y0 + y) * width + x1) * channels), y * cols * channels);
  if (rows !== pol.height || cols !== pol.width) {
    const shrinking = rows >= pol.height && cols >= pol.width;
    win = resize(win, rows, cols, channels, pol.height, pol.width, shrinking ? pol.interpolation : "linear");
    rows = pol.height;
    cols = pol.width;
  }
  const f = Math.fround;
  const m = pol.mean.map((v) => f(f(v) * f(pol.scale)));
  const k = pol.std.map((v) => f(1 / f(f(v) * f(pol.scale))));
  const plane = rows * cols;
  for (let i = 0; i < plane; i++) {
    const r = win[i * channels], g = win[i * channels + 1], b = win[i * channels + 2];
    if (pol.order === "GRAY") {
      const gray = (9798 * r + 19235 * g + 3735 * b + 16384) >> 15; // OpenCV's fixed point
      out[offset + i] = f(f(gray - m[0]) * k[0]);
    } else {
      const [c0, c1, c2] = pol.order === "RGB" ? [r, g, b] : [b, g, r];
      out[offset + i] = f(f(c0 - m[0]) * k[0]);
      out[offset + plane + i] = f(f(c1 - m[1]) * k[1]);
      out[offset + 2 * plane + i] = f(f(c2 - m[2]) * k[2]);
    }
  }
}

/** classify(frames) with a cnn bundle: [[label, probability], ...] best first, per frame. */
export class ImageClassifier {
  static async create(bundle) {
    const m = bundle.manifest;
    if (m.family !== "cnn") throw new BundleError(`not an image classifier bundle (family ${m.family})`);
    const session = await ort.InferenceSession.create(bundle.file(m.model), { executionProviders: ["cpu"] });
    return new ImageClassifier(m, session);
  }

  constructor(manifest, session) {
    this.manifest = manifest;
    this.session = session;
    this.policy = policy(manifest.preprocessing);
    this.labels = manifest.labels ?? [];
  }

  /** Float64 probabilities per frame, in class order. */
  async probabilities(frames) {
    const { channels, height, width } = this.policy;
    const size = channels * height * width;
    const input = new Float32Array(frames.length * size);
    frames.forEach((frame, i) => preprocess(this.policy, frame, input, i * size));
    const feeds = { [this.manifest.inputs[0].name]: new ort.Tensor("float32", input, [frames.length, channels, height, width]) };
    const result = await this.session.run(feeds);
    const logits = result[this.manifest.outputs[0].name];
    const classes = logits.dims[1];
    return frames.map((_, i) => softmax(logits.data.subarray(i * classes, (i + 1) * classes)));
  }

  async classify(frames, topK = 5) {
    return (await this.probabilities(frames)).map((p) => ranked(p, this.labels, topK));
  }
}
