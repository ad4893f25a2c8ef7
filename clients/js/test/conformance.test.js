// The client against the Python runtime on the same bundles and inputs. The fixtures (tiny bundles
// of each family and reelrt's answers) come from `python clients/js/test/make_fixtures.py`.
import assert from "node:assert/strict";
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { BundleError, load, openBundle, verifyBundle } from "../src/index.js";
import { preprocess } from "../src/image.js";

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");
// docs/bundle-spec.md, section 4: "within 1e-4 (fp32) on frames that need no resize ... within 2e-2
// absolute on frames that are resized"
const EXACT = 1e-4;
const RESIZED = 2e-2;

if (!existsSync(path.join(FIXTURES, "answers.json"))) {
  throw new Error(`no fixtures in ${FIXTURES}: run python clients/js/test/make_fixtures.py first`);
}
const answers = JSON.parse(await readFile(path.join(FIXTURES, "answers.json"), "utf-8"));
const bundle = (name) => path.join(FIXTURES, name);

describe("checksums", () => {
  let scratch;
  before(async () => { scratch = await mkdtemp(path.join(os.tmpdir(), "reelrt-js-")); });
  after(async () => { await rm(scratch, { recursive: true, force: true }); });

  test("every fixture bundle verifies", async () => {
    for (const a of answers) await verifyBundle(bundle(a.bundle));
  });

  const damaged = async (name, damage) => {
    const copy = path.join(scratch, `${name}-${Math.random().toString(36).slice(2)}`);
    await cp(bundle(name), copy, { recursive: true });
    await damage(copy);
    return copy;
  };

  test("a flipped byte fails its sha256", async () => {
    const copy = await damaged("text", async (dir) => {
      const file = path.join(dir, "model.onnx");
      const data = await readFile(file);
      data[data.length >> 1] ^= 0x55;
      await writeFile(file, data);
    });
    await assert.rejects(verifyBundle(copy), (e) => e instanceof BundleError && /sha256/.test(e.message));
  });

  test("a truncated artifact, a missing one, a path escaping the bundle, an unknown version", async () => {
    const cases = [
      [async (dir) => truncate(path.join(dir, "tokenizer.json"), 10), /truncated/],
      [async (dir) => rm(path.join(dir, "model.onnx")), /missing/],
      [async (dir) => editManifest(dir, (m) => m.artifacts.push({ path: "../../etc/passwd", size: 1, sha256: "0".repeat(64) })), /escapes/],
      [async (dir) => editManifest(dir, (m) => { m.format_version = 7; }), /format_version/],
      [async (dir) => editManifest(dir, (m) => { m.tokenizer.path = "other.json"; }), /not among/],
    ];
    for (const [damage, expected] of cases) {
      const copy = await damaged("text", damage);
      await assert.rejects(openBundle(copy), (e) => e instanceof BundleError && expected.test(e.message), String(expected));
    }
  });
});

async function editManifest(dir, edit) {
  const file = path.join(dir, "manifest.json");
  const manifest = JSON.parse(await readFile(file, "utf-8"));
  edit(manifest);
  await writeFile(file, JSON.stringify(manifest));
}

for (const a of answers.filter((x) => x.family === "cnn")) {
  describe(`image classification: ${a.bundle}`, () => {
    let clf;
    before(async () => { clf = await load(bundle(a.bundle)); });

    for (const f of a.frames) {
      const what = `${f.width}x${f.height}x${f.channels}${f.resized ? " (resized)" : ""}`;
      test(`${what}: model input, probabilities and labels as reelrt's`, async () => {
        const frame = { data: new Uint8Array(Buffer.from(f.rgb_base64, "base64")), width: f.width, height: f.height, channels: f.channels };
        // the preprocessed input: identical without a resize, within one grey level with one
        const input = new Float32Array(f.input.length);
        preprocess(clf.policy, frame, input);
        const plane = clf.policy.height * clf.policy.width;
        input.forEach((v, i) => {
          const level = 1 / (clf.policy.std[Math.floor(i / plane)] * clf.policy.scale);
          assert.ok(Math.abs(v - f.input[i]) <= (f.resized ? level * 1.001 : 1e-6), `input[${i}]: ${v} vs ${f.input[i]}`);
        });
        const [probs] = await clf.probabilities([frame]);
        const tolerance = f.resized ? RESIZED : EXACT;
        probs.forEach((p, i) => assert.ok(Math.abs(p - f.probabilities[i]) <= tolerance, `class ${i}: ${p} vs ${f.probabilities[i]}`));
        const [ranking] = await clf.classify([frame], probs.length);
        const [first, second] = f.ranked;
        if (!f.resized) assert.deepEqual(ranking.map(([label]) => label), f.ranked.map(([label]) => label));
        else if (first[1] - second[1] > tolerance) assert.equal(ranking[0][0], first[0]);
      });
    }

    test("a batch gives what single frames give", async () => {
      const frames = a.frames.map((f) => ({ data: new Uint8Array(Buffer.from(f.rgb_base64, "base64")), width: f.width, height: f.height, channels: f.channels }));
      const batch = await clf.probabilities(frames);
      for (let i = 0; i < frames.length; i++) {
        const [single] = await clf.probabilities([frames[i]]);
        single.forEach((p, j) => assert.ok(Math.abs(p - batch[i][j]) <= 1e-6));
      }
    });
  });
}

for (const a of answers.filter((x) => x.family === "lstm")) {
  describe(`text classification: ${a.bundle}`, () => {
    let clf;
    before(async () => { clf = await load(bundle(a.bundle)); });

    test("token ids as reelrt's tokenizer gives them (truncated to the manifest's max_length)", () => {
      a.texts.forEach((text, i) => assert.deepEqual(clf.ids([text])[0], a.ids[i], text));
    });

    test("probabilities within 1e-4 and the same ranked labels", async () => {
      const probs = await clf.probabilities(a.texts);
      probs.forEach((row, i) => row.forEach((p, j) => assert.ok(Math.abs(p - a.probabilities[i][j]) <= EXACT, `${a.texts[i]}: ${p}`)));
      const ranked = await clf.classify(a.texts);
      assert.deepEqual(ranked.map((r) => r.map(([label]) => label)), a.ranked.map((r) => r.map(([label]) => label)));
    });

    test("a text without tokens is refused", async () => {
      await assert.rejects(clf.classify(["the cat", "   "]), /text 1/);
    });
  });
}

for (const a of answers.filter((x) => x.family === "gpt2")) {
  describe(`text generation: ${a.bundle}`, () => {
    let gen;
    before(async () => { gen = await load(bundle(a.bundle)); });

    for (const p of a.prompts) {
      test(`${JSON.stringify(p.prompt)}, ${p.max_new_tokens} tokens: reelrt's prompt ids, greedy ids and text`, async () => {
        assert.deepEqual(gen.encode(p.prompt), p.prompt_ids);
        assert.deepEqual(await gen.generateIds(p.prompt_ids, p.max_new_tokens), p.greedy_ids);
        assert.equal(await gen.generate(p.prompt, p.max_new_tokens), p.text);
      });
    }
  });
}
