"""`reelrt train gpt2`: a small GPT-2 trained on local text, for quality figures and the demo.

Random weights say nothing about quantization quality (near-tied logits) and write noise,
so this trains a small model on real offline text: Python's pydoc topics by default, with
every tenth topic held out for perplexity (models/gpt2.py `training_text`). The result is a
transformers checkpoint directory with its tokenizer and a training.json of what the run
measured, which `reelrt export gpt2 --checkpoint` and the peers (transformers, Optimum,
llama.cpp's GGUF converter) all read.

A recipe trains for a time budget (as much as the machine gives) or for a fixed number of
steps (the same model on every machine: the demo's).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reelrt.runtime.errors import InputError

TRAINING_RECORD = "training.json"


@dataclass(frozen=True)
class Recipe:
    shape: dict = field(default_factory=lambda: dict(n_layer=4, n_head=4, n_embd=256, n_positions=256))
    vocab: int = 4096
    block: int = 128              # tokens per training row
    batch: int = 8
    learning_rate: float = 2e-3
    minutes: float | None = 5.0   # a time budget ...
    steps: int | None = None      # ... or a fixed number of steps


def main(args: argparse.Namespace) -> int:
    if args.minutes <= 0:
        raise InputError(f"--minutes must be positive, not {args.minutes}")
    if args.text:
        missing = [t for t in args.text if not Path(t).is_file()]
        if missing:
            raise InputError(f"no such text files: {missing}")
        corpus = "\n\n".join(Path(t).read_text(encoding="utf-8", errors="replace") for t in args.text)
        split = int(len(corpus) * 0.9)
        train_text, heldout_text = corpus[:split], corpus[split:]
    else:
        from reelrt.models.gpt2 import training_text
        train_text, heldout_text = training_text("train"), training_text("heldout")
    out, record = train(args.out, train_text, heldout_text, Recipe(minutes=args.minutes))
    print(f"wrote {out}: {record['steps']} steps in {record['train_seconds']:.0f} s,"
          f" held-out perplexity {record['heldout_perplexity']:.2f}")
    return 0


def train(out: str | Path, train_text: str, heldout_text: str, recipe: Recipe = Recipe(),
          seed: int = 0) -> tuple[Path, dict]:
    """Fit a byte-level BPE tokenizer and a GPT-2 on train_text; write the checkpoint and its record."""
    import torch
    from tqdm import tqdm
    from transformers import GPT2Config, GPT2LMHeadModel

    from reelrt.models.gpt2 import EOS_TOKEN, save_checkpoint, train_tokenizer
    start = time.monotonic()
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(recipe.vocab, train_text)
    data = torch.tensor(tokenizer.encode(train_text).ids, dtype=torch.long)
    heldout = torch.tensor(tokenizer.encode(heldout_text).ids, dtype=torch.long)
    if len(data) < 4 * recipe.block:
        raise InputError(f"the training text holds only {len(data)} tokens; give more text")
    eos = tokenizer.token_to_id(EOS_TOKEN)
    config = GPT2Config(**recipe.shape, vocab_size=tokenizer.get_vocab_size(), bos_token_id=eos, eos_token_id=eos,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.05, betas=(0.9, 0.95))
    rng = np.random.default_rng(seed)
    budget = (recipe.minutes or 0) * 60
    loop_start = time.monotonic()

    def progress() -> float:
        """How far training is, 0..1: by steps, or by time."""
        return step / recipe.steps if recipe.steps else (time.monotonic() - loop_start) / budget

    model.train()
    step, loss = 0, float("nan")
    with tqdm(total=recipe.steps, desc="train gpt2", unit="step", disable=None) as bar:  # None: off unless a terminal
        while (done := progress()) < 1:
            warmup = min(1.0, (step + 1) / 50)
            lr = recipe.learning_rate * warmup * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            starts = rng.integers(0, len(data) - recipe.block - 1, recipe.batch)
            batch = torch.stack([data[s:s + recipe.block] for s in starts])
            loss = model(batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    record = {"steps": step, "train_seconds": round(time.monotonic() - start, 1),
              "final_loss": round(loss.item(), 3), "train_tokens": len(data),
              "heldout_perplexity": round(heldout_perplexity(model, heldout, recipe.block), 2),
              "shape": recipe.shape, "vocab": tokenizer.get_vocab_size()}
    out = save_checkpoint(model, tokenizer, out)
    (out / TRAINING_RECORD).write_text(json.dumps(record, indent=2))
    return out, record


def read_record(checkpoint: str | Path) -> dict:
    """What the training run of a checkpoint directory measured ({} when it has no record)."""
    path = Path(checkpoint) / TRAINING_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def heldout_perplexity(model, ids, block: int) -> float:
    import torch
    losses = []
    with torch.no_grad():
        for s in range(0, max(1, len(ids) - block), block):
            chunk = ids[s:s + block + 1][None]
            if chunk.shape[1] > 1:
                losses.append(model(chunk, labels=chunk).loss.item())
    return math.exp(float(np.mean(losses)))
