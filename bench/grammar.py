"""What a grammar mask costs per token, against the decode step it rides on.

    python -m reelrt.bench.grammar [--bundle GPT2_INT4] [--tokenizer tokenizer.json] [--answers 100]
                                   [--model-answers 10] [--threads 1] [--json FILE]

1. Token table and grammar: a GPT-2-sized byte-level BPE (50257 tokens, trained here on
   Python's own sources and pydoc topics unless --tokenizer names one), the NPC schema below.
2. Random logits: --answers answers drawn through the mask (mask -> pick -> accept, forced
   tokens appended); each must parse and validate. The time of allowed(), accept() and
   forced() per token, and decode steps per generated token when each run of forced tokens
   rides in the step of the token before it (one prefill-like step, not one step each).
3. With --bundle (GPT-2 small int4): its decode step alone (bench/decode_step.py's timing),
   the mask overhead as a share of it, and --model-answers answers of the model itself
   (random weights, sampled at temperature 1 inside the mask), each step timed with the mask
   computed after the step and with it computed on a worker thread while the step runs; the
   same with the step replaced by a sleep of its median length (random logits), which leaves
   the worker a core: what the worker thread gains where the device has one to spare.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

# an NPC's answer as a game reads it: enums, short strings, bounded integers, a nested object, a list
# (an unbounded JSON number under random logits runs to hundreds of digit tokens: tests cover those)
NPC = {
    "type": "object",
    "properties": {
        "mood": {"enum": ["angry", "calm", "afraid"]},
        "line": {"type": "string", "maxLength": 24},
        "target": {"type": "object",
                   "properties": {"name": {"type": "string", "maxLength": 8},
                                  "distance": {"type": "integer", "minimum": 0, "maximum": 1000},
                                  "hostile": {"type": "boolean"}},
                   "required": ["name", "distance", "hostile"], "additionalProperties": False},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "gold": {"type": "integer", "minimum": 0, "maximum": 500},
    },
    "required": ["mood", "line", "target", "items", "gold"],
    "additionalProperties": False,
}
BUDGET = 400       # tokens an answer may take before it counts as unfinished
PROMPT = "The guard at the gate answers in JSON:"
MODES = ("after the step", "background")
KINDS = {"model": "the model's answers", "idle step": "a step that leaves a core free"}


def gpt2_sized_tokenizer():
    """A byte-level BPE of GPT-2 small's size, trained on text every Python ships (no download)."""
    from pydoc_data.topics import topics

    from reelrt.models.gpt2 import CONFIGS, train_tokenizer
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.rglob("*.py") if "test" not in p.parts and "site-packages" not in p.parts)
    text = "\n".join([p.read_text(errors="replace") for p in sources] + list(topics.values()))
    return train_tokenizer(CONFIGS["gpt2"]["vocab_size"], text)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def random_logit_answers(grammar, tokenizer, vocab_size: int, eos: int, answers: int, seed: int) -> dict:
    """Answers drawn with random logits; the seconds of each call; steps and tokens."""
    rng = np.random.default_rng(seed)
    calls = {"allowed": [], "accept": [], "forced": []}
    steps = tokens = valid = 0
    for _ in range(answers):
        c, ids = grammar.constraint(), []
        ids += timed(c.forced)[0]
        while not c.is_done() and len(ids) < BUDGET:
            mask, seconds = timed(c.allowed)
            calls["allowed"].append(seconds)
            token = int(np.argmax(np.where(mask, rng.standard_normal(vocab_size), -np.inf)))
            calls["accept"].append(timed(c.accept, token)[1])
            steps += 1
            if token == eos:
                break
            forced, seconds = timed(c.forced)
            calls["forced"].append(seconds)
            ids += [token] + forced
        tokens += len(ids)
        valid += _valid(tokenizer.decode(ids))
    return {"answers": answers, "valid": valid, "steps": steps, "tokens": tokens,
            "us": {k: _us(v) for k, v in calls.items()}}


class DecoderSteps:
    """The model's steps: the prompt's prefill, then one decode step per sampled token, or one
    prefill-like step when forced tokens follow it."""

    def __init__(self, bundle: str, threads: int):
        from reelrt.runtime import load
        self.decoder = load(bundle, threads=threads).decoder
        self.vocab_size = self.decoder.vocab_size

    def start(self, ids: list[int]) -> np.ndarray:
        self.decoder.start(1)
        return self.decoder.prefill(0, np.array(ids, np.int64))

    def step(self, run: list[int]) -> np.ndarray:
        d = self.decoder
        if len(run) == 1:
            return d.decode(np.array(run, np.int64))[0]
        return d.prefill(0, np.array(run, np.int64), start=int(d.lengths[0]))


class IdleSteps:
    """A step that leaves a core free (a sleep of a decode step's length, random logits): where
    a mask computed on a worker thread has a core to run on."""

    def __init__(self, vocab_size: int, seconds: float, seed: int):
        self.vocab_size, self.seconds, self.rng = vocab_size, seconds, np.random.default_rng(seed)

    def start(self, ids: list[int]) -> np.ndarray:
        return self.rng.standard_normal(self.vocab_size).astype(np.float32)

    def step(self, run: list[int]) -> np.ndarray:
        time.sleep(self.seconds)
        return self.start(run)


def model_answers(steps, grammar, tokenizer, eos: int, answers: int, seed: int, background: bool) -> dict:
    """Answers sampled at temperature 1 inside the mask, timed per step: the model call, and the
    grammar's calls on the critical path (allowed(), or what is left to wait for of a mask
    started before the call, plus accept() and forced())."""
    rng = np.random.default_rng(seed)
    prompt = tokenizer.encode(PROMPT).ids
    grammar_s, model_s, texts, sampled, tokens = [], [], [], 0, 0
    for _ in range(answers):
        c = grammar.constraint()
        ids = c.forced()
        logits = steps.start(prompt + ids)
        while not c.is_done() and len(ids) < BUDGET:
            gumbel = -np.log(-np.log(rng.random(steps.vocab_size)))
            start = time.perf_counter()
            mask = c.allowed()
            spent = time.perf_counter() - start
            token = int(np.argmax(np.where(mask, logits + gumbel, -np.inf)))
            start = time.perf_counter()
            c.accept(token)
            run = [token] + (c.forced() if token != eos else [])
            if background and not c.is_done():
                c.start_mask()
            grammar_s.append(spent + time.perf_counter() - start)
            sampled += 1
            if token == eos:
                break
            ids += run
            if c.is_done():
                break
            logits, seconds = timed(steps.step, run)
            model_s.append(seconds)
        tokens += len(ids)
        texts.append(tokenizer.decode(ids))
    return {"answers": answers, "valid": sum(map(_valid, texts)), "steps": sampled, "tokens": tokens,
            "grammar_us": _us(grammar_s), "model_call_ms": _ms(model_s), "example": texts[0]}


def _valid(text: str) -> bool:
    """The text parses as JSON and the value follows the NPC schema."""
    import jsonschema
    try:
        jsonschema.validate(json.loads(text), NPC)
        return True
    except (ValueError, jsonschema.ValidationError):
        return False


def _us(seconds: list[float]) -> dict:
    return _stats(seconds, 1e6, 1)


def _ms(seconds: list[float]) -> dict:
    return _stats(seconds, 1e3, 2)


def _stats(seconds: list[float], scale: float, digits: int) -> dict:
    ordered = sorted(seconds)
    return {k: round(v * scale, digits) for k, v in (("median", statistics.median(ordered)),
            ("mean", statistics.fmean(ordered)), ("p90", ordered[int(0.9 * (len(ordered) - 1))]))} | {"n": len(ordered)}


def run(bundle: str | None, tokenizer_path: str | None, answers: int, model_runs: int, threads: int, seed: int) -> dict:
    from tokenizers import Tokenizer

    from reelrt.bench.decode_step import step_times
    from reelrt.runtime import open_bundle
    from reelrt.runtime.tasks.generation.grammar import ConstraintSpec, Grammar
    tokenizer, seconds = timed(lambda: Tokenizer.from_file(tokenizer_path) if tokenizer_path else gpt2_sized_tokenizer())
    # the model's logits may outnumber the tokenizer's tokens (GPT-2 small: 50257 over a smaller trained one)
    vocab_size = int(open_bundle(bundle).manifest.extra["vocab_size"]) if bundle else tokenizer.get_vocab_size()
    eos = tokenizer.token_to_id("<|endoftext|>")
    spec = ConstraintSpec("json_schema", json.dumps(NPC))
    grammar, compile_s = timed(Grammar.compile, spec, tokenizer, vocab_size, eos)
    _, again_s = timed(Grammar.compile, ConstraintSpec("json_object"), tokenizer, vocab_size, eos)
    out = {"tokenizer": {"vocab": tokenizer.get_vocab_size(), "source": tokenizer_path or "trained here",
                         "seconds": round(seconds, 1)},
           "compile_ms": {"first (token table + grammar)": round(compile_s * 1e3, 1),
                          "another spec, same tokenizer": round(again_s * 1e3, 1)},
           "random_logits": random_logit_answers(grammar, tokenizer, vocab_size, eos, answers, seed)}
    if bundle:
        out["decode_step_ms"] = _ms(step_times(bundle, 10, threads))
        model = DecoderSteps(bundle, threads)
        for mode in MODES:
            idle = IdleSteps(vocab_size, out["decode_step_ms"]["median"] / 1e3, seed)
            for kind, steps in (("model", model), ("idle step", idle)):
                out[f"{kind} ({mode})"] = model_answers(steps, grammar, tokenizer, eos, model_runs, seed,
                                                        background=mode == "background")
    return out


def markdown(r: dict) -> str:
    rl = r["random_logits"]
    calls = rl["us"]
    per_step = sum(calls[k]["mean"] for k in ("allowed", "accept", "forced"))   # each step makes each call once
    rows = [
        ("tokenizer", f"byte-level BPE, {r['tokenizer']['vocab']} tokens ({r['tokenizer']['source']})"),
        ("compile: token table + NPC schema / another spec", " / ".join(f"{v} ms" for v in r["compile_ms"].values())),
        ("random logits: answers valid", f"{rl['valid']} of {rl['answers']}"),
        *((f"{k}() per step, median / mean / p90", f"{calls[k]['median']} / {calls[k]['mean']} / {calls[k]['p90']} µs")
          for k in ("allowed", "accept", "forced")),
        ("random logits: decode steps per generated token",
         f"{rl['steps'] / rl['tokens']:.2f} ({rl['steps']} steps, {rl['tokens']} tokens)"),
    ]
    if "decode_step_ms" in r:
        step = r["decode_step_ms"]
        rows.append(("decode step alone (bench/decode_step.py), median / mean / p90",
                     f"{step['median']} / {step['mean']} / {step['p90']} ms"))
        rows.append(("grammar per step (mean of the three calls) / decode step (median)",
                     f"{per_step / 1e3 / step['median']:.2%}"))
        for kind, mode in ((k, m) for k in KINDS for m in MODES):
            m = r[f"{kind} ({mode})"]
            g = m["grammar_us"]
            share = g["mean"] / 1e3 / m["model_call_ms"]["median"]
            rows.append((f"{KINDS[kind]}, mask {mode}: grammar on the critical path, median / mean / p90",
                         f"{g['median']} / {g['mean']} / {g['p90']} µs, mean {share:.1%} of the step (median"
                         f" {m['model_call_ms']['median']} ms); {m['valid']} of {m['answers']} valid;"
                         f" {m['steps'] / m['tokens']:.2f} steps per token"))
    return "| measure | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelrt.bench.grammar", description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="a GPT-2 small int4 bundle: time its decode step and its own answers")
    p.add_argument("--tokenizer", help="a byte-level BPE tokenizer.json (default: train a 50257-token one here)")
    p.add_argument("--answers", type=int, default=100, help="random-logit answers (default: 100)")
    p.add_argument("--model-answers", type=int, default=10, help="the model's answers per mode (default: 10)")
    p.add_argument("--threads", type=int, default=1, help="decode threads (default: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args(argv)
    result = run(args.bundle, args.tokenizer, args.answers, args.model_answers, args.threads, args.seed)
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False))
        tmp.replace(args.json)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
