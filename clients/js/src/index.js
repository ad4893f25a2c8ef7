// A Node.js client for reelrt bundles, written from docs/bundle-spec.md.
//
//   import { load } from "reelrt-client";
//   const clf = await load("bundles/mobilenetv2");              // ImageClassifier
//   await clf.classify([{ data: rgbBytes, width, height, channels: 3 }], 5);
//   const gen = await load("bundles/gpt2");                      // TextGenerator
//   await gen.generate("The innkeeper says", 40);                // greedy
import { openBundle } from "./bundle.js";
import { TextGenerator } from "./generate.js";
import { ImageClassifier } from "./image.js";
import { TextClassifier } from "./text.js";

export { BundleError, openBundle, verifyBundle } from "./bundle.js";
export { ImageClassifier, TextClassifier, TextGenerator };

const TASKS = { cnn: ImageClassifier, lstm: TextClassifier, gpt2: TextGenerator };

/** Open, verify and load a bundle as the task its family serves. */
export async function load(dir, options = {}) {
  const bundle = await openBundle(dir, options);
  return TASKS[bundle.manifest.family].create(bundle);
}
