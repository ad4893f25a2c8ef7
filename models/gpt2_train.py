"""`reelrt train gpt2`: a small GPT-2 trained on local text, for quality figures.

Random weights say nothing about quantization quality (near-tied logits), so this trains a
small model for a few minutes on real offline text: Python's pydoc topics by default, with
every tenth topic held out for perplexity (models/gpt2.py `training_text`). The result is a
transformers checkpoint directory with its tokenizer, which `reelrt export gpt2 --checkpoint`
and the peers (transformers, Optimum, llama.cpp's GGUF converter) all read.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from reelrt.runtime.errors import InputError

SHAPE = dict(n_layer=4, n_head=4, n_embd=256, n_positions=256)
VOCAB = 4096
BLOCK = 128
BATCH = 8


def main(args: argparse.Namespace) -> int:
    out = train(args.out, texts=args.text, minutes=args.minutes)
    print(f"wrote {out}")
    return 0


def train(out: str | Path, texts: list[str] | None = None, minutes: float = 5.0, seed: int = 0) -> Path:
    import torch
    from tqdm import tqdm
    from transformers import GPT2Config, GPT2LMHeadModel

    from reelrt.models.gpt2 import EOS_TOKEN, save_checkpoint, train_tokenizer, training_text
    if minutes <= 0:
        raise InputError(f"--minutes must be positive, not {minutes}")
    if texts:
        missing = [t for t in texts if not Path(t).is_file()]
        if missing:
            raise InputError(f"no such text files: {missing}")
        corpus = "\n\n".join(Path(t).read_text(encoding="utf-8", errors="replace") for t in texts)
        split = int(len(corpus) * 0.9)
        train_text, heldout_text = corpus[:split], corpus[split:]
    else:
        train_text, heldout_text = training_text("train"), training_text("heldout")
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(VOCAB, train_text)
    data = torch.tensor(tokenizer.encode(train_text).ids, dtype=torch.long)
    heldout = torch.tensor(tokenizer.encode(heldout_text).ids, dtype=torch.long)
    if len(data) < 4 * BLOCK:
        raise InputError(f"the training text holds only {len(data)} tokens; give more text")
    eos = tokenizer.token_to_id(EOS_TOKEN)
    config = GPT2Config(**SHAPE, vocab_size=tokenizer.get_vocab_size(), bos_token_id=eos, eos_token_id=eos,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05, betas=(0.9, 0.95))
    rng = np.random.default_rng(seed)
    budget = minutes * 60
    start = time.monotonic()
    model.train()
    with tqdm(desc="training", unit="step") as bar:
        step = 0
        while (elapsed := time.monotonic() - start) < budget:
            lr = 2e-3 * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            starts = rng.integers(0, len(data) - BLOCK - 1, BATCH)
            batch = torch.stack([data[s:s + BLOCK] for s in starts])
            loss = model(batch, labels=batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    print(f"held-out perplexity after {step} steps: {heldout_perplexity(model, heldout):.2f}")
    return save_checkpoint(model, tokenizer, out)


def heldout_perplexity(model, ids) -> float:
    import torch
    losses = []
    with torch.no_grad():
        for s in range(0, max(1, len(ids) - BLOCK), BLOCK):
            chunk = ids[s:s + BLOCK + 1][None]
            if chunk.shape[1] > 1:
                losses.append(model(chunk, labels=chunk).loss.item())
    return math.exp(float(np.mean(losses)))
