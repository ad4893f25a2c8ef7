// The bundle's tokenizer.json (with tokenizer_config.json where the bundle has one), read by tokenizers.js.
import { readFile } from "node:fs/promises";

import { Tokenizer } from "@huggingface/tokenizers";

import { BundleError } from "./bundle.js";

export async function readTokenizer(bundle) {
  const rel = bundle.manifest.tokenizer?.path;
  if (rel === undefined) throw new BundleError("the bundle's manifest names no tokenizer.path");
  const config = bundle.manifest.artifactMap.has("tokenizer_config.json")
    ? JSON.parse(await readFile(bundle.file("tokenizer_config.json"), "utf-8"))
    : {};
  try {
    const json = JSON.parse(await readFile(bundle.file(rel), "utf-8"));
    const tokenizer = new Tokenizer(json, config);
    // tokenizers.js's WordLevel model gives no id for an unknown word; the format says unk_token's
    tokenizer.unkId = json.model?.unk_token === undefined ? undefined : json.model.vocab?.[json.model.unk_token];
    return tokenizer;
  } catch (e) {
    throw new BundleError(`${rel} is not a tokenizer.json this client can read: ${e.message}`);
  }
}

/** Token ids of a text to classify, without special tokens (the spec's section 5). */
export function encode(tokenizer, text) {
  return tokenizer.encode(text, { add_special_tokens: false }).ids.map((id) => id ?? tokenizer.unkId);
}
