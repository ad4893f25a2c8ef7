"""Tiny bundles of each family and the Python runtime's answers on them, for the JavaScript client's
conformance test: `python clients/js/test/make_fixtures.py [OUT]` (default clients/js/test/fixtures).

answers.json holds, per bundle, the inputs (raw frames as base64, texts, prompts) and reelrt's
answers: the model input a frame becomes, probabilities of every class and the ranked labels,
token ids, greedy ids and text.
"""
from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_tiny_cnn_bundle, make_tiny_text_bundle, quantize_bundle  # noqa: E402

from reelrt.export.gpt2 import export as export_gpt2  # noqa: E402
from reelrt.runtime import load  # noqa: E402
from reelrt.runtime.tasks.ranking import softmax  # noqa: E402

TEXTS = ["the cat sat on the mat", "captain on the bridge", "dogs", "the ship warped away from the garden and the cat"
         " chased the dogs past the captain on the bridge", "Unknown words: zebra quokka", "  spaced   out  "]
PROMPTS = [("The interpreter reads the statement", 24), ("x", 5), ("A quest: find the dragon and", 40),
           ("def f(x):\n    return x", 16)]
# (height, width): 18 x 18 and 18 x 30 need no resize (the centre crop is already 16 x 16); the rest
# are shrunk with the bundle's area filter or enlarged bilinearly
EXACT_SIZES = [(18, 18), (18, 30), (30, 18)]
RESIZED_SIZES = [(24, 32), (40, 40), (37, 53), (9, 7), (17, 21)]


def frames(rng: np.random.Generator) -> list[dict]:
    out = []
    for sizes, resized in ((EXACT_SIZES, False), (RESIZED_SIZES, True)):
        for h, w in sizes:
            for channels in (3, 4):
                # smooth content (as photos are) plus noise, so a resize means something
                y, x = np.mgrid[0:h, 0:w]
                base = np.stack([(x * 255 / max(w - 1, 1)), (y * 255 / max(h - 1, 1)), ((x + y) * 7) % 256] +
                                ([np.full((h, w), 200.0)] if channels == 4 else []), -1)
                frame = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
                out.append({"height": h, "width": w, "channels": channels, "resized": resized, "frame": frame})
    return out


def image_answers(bundle: Path, rng: np.random.Generator) -> dict:
    clf = load(bundle)
    cases = []
    for case in frames(rng):
        frame = case.pop("frame")
        probs = softmax(clf.logits(frame, rgb=True))[0]
        p = clf.preprocess
        pixels = np.empty((p.channels, p.height, p.width), np.float32)
        p(frame, True, pixels)
        cases.append({**case, "rgb_base64": base64.b64encode(frame.tobytes()).decode(), "input": pixels.ravel().tolist(),
                      "probabilities": probs.tolist(), "ranked": clf.classify(frame, top_k=len(probs), rgb=True)})
    return {"bundle": bundle.name, "family": "cnn", "frames": cases}


def text_answers(bundle: Path) -> dict:
    clf = load(bundle)
    return {"bundle": bundle.name, "family": "lstm", "texts": TEXTS,
            "ids": [clf.tokenizer.encode(t, add_special_tokens=False).ids for t in TEXTS],
            "probabilities": clf.probabilities(TEXTS).tolist(), "ranked": clf.classify(TEXTS)}


def generation_answers(bundle: Path) -> dict:
    gen = load(bundle)
    cases = []
    for prompt, new_tokens in PROMPTS:
        ids = gen.tokenizer.encode(prompt).ids
        cases.append({"prompt": prompt, "max_new_tokens": new_tokens, "prompt_ids": ids,
                      "greedy_ids": gen.generate_ids(ids, max_new_tokens=new_tokens),
                      "text": gen.generate(prompt, max_new_tokens=new_tokens, temperature=0.0)})
    return {"bundle": bundle.name, "family": "gpt2", "prompts": cases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(Path(__file__).parent / "fixtures"))
    out = Path(parser.parse_args().out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(7)
    gpt2 = export_gpt2(out / "gpt2", config="tiny", threads=1)
    bundles = {"cnn-rgb": make_tiny_cnn_bundle(out / "cnn-rgb"),
               "cnn-gray": make_tiny_cnn_bundle(out / "cnn-gray", channel_order="GRAY"),
               "text": make_tiny_text_bundle(out / "text"),
               "gpt2": gpt2,
               "gpt2-int4": quantize_bundle(gpt2, out / "gpt2-int4", "int4", block_size=16)}
    answers = [image_answers(bundles["cnn-rgb"], rng), image_answers(bundles["cnn-gray"], rng),
               text_answers(bundles["text"]), generation_answers(bundles["gpt2"]), generation_answers(bundles["gpt2-int4"])]
    (out / "answers.json").write_text(json.dumps(answers, indent=1) + "\n")
    print(f"wrote {len(bundles)} bundles and answers.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
