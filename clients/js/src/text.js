// Text classification (docs/bundle-spec.md, section 5): strings to ranked labels.
import ort from "onnxruntime-node";

import { BundleError } from "./bundle.js";
import { ranked, softmax } from "./ranking.js";
import { encode, readTokenizer } from "./tokenizer.js";

const BATCH = 16;

export class TextClassifier {
  static async create(bundle) {
    const m = bundle.manifest;
    if (m.family !== "lstm") throw new BundleError(`not a text classifier bundle (family ${m.family})`);
    const { max_length: maxLength, pad_id: padId } = m.tokenizer ?? {};
    if (!Number.isInteger(maxLength) || maxLength < 1 || !Number.isInteger(padId) || padId < 0) {
      throw new BundleError("manifest.tokenizer needs max_length >= 1 and pad_id >= 0");
    }
    const session = await ort.InferenceSession.create(bundle.file(m.model), { executionProviders: ["cpu"] });
    return new TextClassifier(m, session, await readTokenizer(bundle), maxLength, padId);
  }

  constructor(manifest, session, tokenizer, maxLength, padId) {
    Object.assign(this, { manifest, session, tokenizer, maxLength, padId, labels: manifest.labels });
  }

  /** Each text's kept token ids (its first max_length); a text with none is refused. */
  ids(texts) {
    return texts.map((text, i) => {
      if (typeof text !== "string") throw new TypeError(`text ${i} is not a string`);
      const ids = encode(this.tokenizer, text).slice(0, this.maxLength);
      if (ids.length === 0) throw new RangeError(`text ${i} (${JSON.stringify(text.slice(0, 40))}) holds no token to classify`);
      return ids;
    });
  }

  /** Float64 probabilities per text, in the texts' order; texts sorted by length, 16 at a time. */
  async probabilities(texts) {
    const rows = this.ids(texts);
    const order = rows.map((_, i) => i).sort((a, b) => rows[a].length - rows[b].length || a - b);
    const out = new Array(rows.length);
    for (let start = 0; start < order.length; start += BATCH) {
      const group = order.slice(start, start + BATCH);
      const width = Math.max(...group.map((i) => rows[i].length));
      const ids = new BigInt64Array(group.length * width).fill(BigInt(this.padId));
      group.forEach((i, r) => rows[i].forEach((id, t) => { ids[r * width + t] = BigInt(id); }));
      const lengths = Int32Array.from(group, (i) => rows[i].length);
      const result = await this.session.run({
        input_ids: new ort.Tensor("int64", ids, [group.length, width]),
        lengths: new ort.Tensor("int32", lengths, [group.length]),
      });
      const classes = result.logits.dims[1];
      group.forEach((i, r) => { out[i] = softmax(result.logits.data.subarray(r * classes, (r + 1) * classes)); });
    }
    return out;
  }

  async classify(texts, topK) {
    return (await this.probabilities(texts)).map((p) => ranked(p, this.labels, topK));
  }
}
