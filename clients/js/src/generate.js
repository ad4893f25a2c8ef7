// Greedy text generation with a GPT-2 bundle (docs/bundle-spec.md, section 6), one prompt at a time.
import ort from "onnxruntime-node";

import { BundleError } from "./bundle.js";
import { readTokenizer } from "./tokenizer.js";

export class TextGenerator {
  static async create(bundle) {
    const m = bundle.manifest;
    if (m.family !== "gpt2") throw new BundleError(`not a text generation bundle (family ${m.family})`);
    for (const key of ["n_layer", "n_head", "head_dim", "vocab_size", "max_context"]) {
      if (!Number.isInteger(m.extra?.[key]) || m.extra[key] < 1) throw new BundleError(`manifest.extra.${key} must be a positive integer`);
    }
    const session = await ort.InferenceSession.create(bundle.file(m.model), { executionProviders: ["cpu"] });
    return new TextGenerator(m, session, await readTokenizer(bundle));
  }

  constructor(manifest, session, tokenizer) {
    Object.assign(this, { manifest, session, tokenizer });
    const x = manifest.extra;
    this.cacheDims = [1, x.n_head, x.max_context, x.head_dim];
    this.eos = manifest.tokenizer.eos_token_id ?? x.eos_token_id ?? null;
    this.textVocab = Math.min(manifest.tokenizer.vocab_size ?? x.vocab_size, x.vocab_size);
  }

  /** One step: the ids `tokens` appended at position `length`; returns the next-token logits. */
  async step(cache, tokens, length) {
    const n = tokens.length;
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(tokens, BigInt), [1, n]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(length + n).fill(1n), [1, length + n]),
      position_ids: new ort.Tensor("int64", BigInt64Array.from({ length: n }, (_, i) => BigInt(length + i)), [1, n]),
    };
    for (let i = 0; i < this.manifest.extra.n_layer; i++) {
      for (const kind of ["key", "value"]) feeds[`past_key_values.${i}.${kind}`] = cache[`${i}.${kind}`];
    }
    const result = await this.session.run(feeds);
    for (let i = 0; i < this.manifest.extra.n_layer; i++) {
      for (const kind of ["key", "value"]) cache[`${i}.${kind}`] = result[`present.${i}.${kind}`];
    }
    return result.logits.data;
  }

  /** Greedy new ids after prompt ids, stopping at end-of-text (not returned) or after maxNewTokens.
   *  limit: ids at or above it are never chosen (the tokenizer's size, for text). */
  async generateIds(ids, maxNewTokens, limit = this.manifest.extra.vocab_size) {
    const context = this.manifest.extra.max_context;
    if (ids.length === 0 || ids.length + maxNewTokens > context) {
      throw new RangeError(`a prompt of 1 to ${context - maxNewTokens} tokens is needed, got ${ids.length}`);
    }
    const zeros = new Float32Array(this.cacheDims.reduce((a, b) => a * b, 1));
    const cache = {};
    for (let i = 0; i < this.manifest.extra.n_layer; i++) {
      for (const kind of ["key", "value"]) cache[`${i}.${kind}`] = new ort.Tensor("float32", zeros.slice(), this.cacheDims);
    }
    const out = [];
    let logits = await this.step(cache, ids, 0);
    let length = ids.length;
    while (out.length < maxNewTokens) {
      let best = 0;
      for (let t = 1; t < limit; t++) if (logits[t] > logits[best]) best = t; // the lowest index on ties
      if (best === this.eos) break;
      out.push(best);
      if (out.length === maxNewTokens) break;
      logits = await this.step(cache, [best], length);
      length += 1;
    }
    return out;
  }

  /** A prompt's ids, with the tokenizer file's own defaults (the spec's section 6, step 1). */
  encode(prompt) {
    return this.tokenizer.encode(prompt).ids;
  }

  /** The greedy continuation of a prompt, as text. */
  async generate(prompt, maxNewTokens = this.manifest.generation?.max_new_tokens ?? 64) {
    if (typeof prompt !== "string" || prompt.length === 0) throw new TypeError("prompt must be a non-empty string");
    const ids = await this.generateIds(this.encode(prompt), maxNewTokens, this.textVocab);
    return this.tokenizer.decode(ids, { skip_special_tokens: false });
  }
}
