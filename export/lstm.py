"""`reelrt export text-classifier` (alias `lstm`): the built-in LSTM classifier (a checkpoint of
`reelrt train lstm`, or random weights) as one ONNX LSTM op per layer, padding-exact; with
--module, the user's own LSTM/GRU classifier (export/recurrent.py).

Why the graph is written here from the weights rather than by torch.onnx.export:
torch's dynamo exporter cannot trace pack_padded_sequence (data-dependent shapes), and
without packing it emits LSTM ops with no sequence_lens, so padding changes the answers;
the TorchScript exporter (dynamo=False, deprecated) does pass sequence_lens but wraps the
op in a sort and an unsort of the batch (TopK, Gathers). The graph below is what both
should be: Gather (embedding) -> LSTM (with sequence_lens) per layer -> Gemm, never
unrolled, dynamic in batch and sequence length. Every export is then checked against
PyTorch's packed-sequence forward, and each padded row against its text run alone.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from reelrt.export.provenance import provenance
from reelrt.export.recurrent import (REFERENCE_TEXTS, RecurrentParts, build_graph, onnx_logits, padded_vs_single,
                                     write_bundle)
from reelrt.runtime.tasks.ranking import Head
from reelrt.runtime.tasks.text import encode
from reelrt.runtime.validation import check, compare

HELDOUT = "heldout.csv"       # labelled rows the model never trained on: accuracy after quantization
VALIDATION_TEXTS = 64


def build_onnx(model, path: Path) -> None:
    """Write the built-in classifier's graph (export/recurrent.py: inputs input_ids int64 (batch,
    sequence) and lengths int32 (batch,), output logits float32 (batch, classes))."""
    build_graph(RecurrentParts(model.embedding, model.lstm, model.head), path)


def torch_logits(model, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """PyTorch's answer with packed sequences: each row runs for its own length."""
    import torch
    with torch.no_grad():
        return model.eval()(torch.from_numpy(ids), torch.from_numpy(lengths.astype(np.int64)), packed=True).numpy()


def validation_inputs(checkpoint, max_length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch with lengths from 1 to max_length: random ids, plus held-out texts when there are some."""
    rng = np.random.default_rng(seed)
    lengths = np.array([1, 2, max_length, *rng.integers(1, max_length + 1, 5)], np.int32)
    ids = rng.integers(2, checkpoint.tokenizer.get_vocab_size(), (len(lengths), max_length)).astype(np.int64)
    ids[np.arange(max_length)[None, :] >= lengths[:, None]] = 0
    texts = [text for text, _ in checkpoint.heldout[:VALIDATION_TEXTS]]
    if not texts:
        return ids, lengths
    text_ids, text_lengths = encode(checkpoint.tokenizer, texts, max_length, 0)
    width = max(ids.shape[1], text_ids.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])))
    return np.concatenate([pad(ids), pad(text_ids)]), np.concatenate([lengths, text_lengths])


def validate(checkpoint, path: Path, max_length: int) -> dict:
    """Check the written graph against PyTorch and padding against single runs; raise ValidationError."""
    ids, lengths = validation_inputs(checkpoint, max_length)
    reference = torch_logits(checkpoint.model, ids, lengths)
    facts = {"pytorch": check(compare(reference, onnx_logits(path, ids, lengths)), "fp32",
                              "ONNX vs PyTorch (packed sequences)", top1=False).to_json(),
             "padded_vs_single": check(padded_vs_single(path, ids, lengths), "fp32",
                                       "padded batch vs each text alone", top1=False).to_json()}
    if checkpoint.heldout:
        facts["heldout_accuracy"] = round(heldout_accuracy(path, checkpoint.tokenizer, checkpoint.heldout,
                                                           checkpoint.labels, max_length), 4)
    return facts


def heldout_accuracy(path: Path, tokenizer, rows: list[tuple[str, str]], labels: list[str], max_length: int) -> float:
    ids, lengths = encode(tokenizer, [text for text, _ in rows], max_length, 0)
    predicted = onnx_logits(path, ids, lengths).argmax(-1)
    return float(np.mean([labels[p] == label for p, (_, label) in zip(predicted, rows)]))


def reference_ids(checkpoint, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference set's real texts (held-out rows, else REFERENCE_TEXTS) as the graph's feeds;
    PyTorch's logits for them go beside them: what quantize and compile check a new graph against."""
    texts = [text for text, _ in checkpoint.heldout[:VALIDATION_TEXTS]] or list(REFERENCE_TEXTS)
    return encode(checkpoint.tokenizer, texts, max_length, 0)


def write_heldout(rows: list[tuple[str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def export_bundle(checkpoint, out: str | Path, source: str, checkpoint_path: str | None = None, *,
                  random_weights: bool) -> Path:
    """Write and validate a bundle for a checkpoint (trained, or random_weights)."""
    from reelrt.models.lstm import PAD_ID

    model = checkpoint.model.eval()
    extra, files = {}, {}
    if checkpoint.heldout:
        files[HELDOUT] = lambda path: write_heldout(checkpoint.heldout, path)
        extra["heldout"] = HELDOUT
    ids, lengths = reference_ids(checkpoint, checkpoint.max_length)
    return write_bundle(out, RecurrentParts(model.embedding, model.lstm, model.head), checkpoint.tokenizer,
                        checkpoint.labels, Head("softmax"), checkpoint.max_length, PAD_ID,
                        lambda path: validate(checkpoint, path, checkpoint.max_length),
                        provenance(source, checkpoint_path, random_weights=random_weights,
                                   train_metrics=checkpoint.metrics or None),
                        (ids, lengths, torch_logits(model, ids, lengths)), extra, files)


def main(args: argparse.Namespace) -> int:
    from reelrt.models.lstm import Checkpoint, random_checkpoint

    if getattr(args, "module", None):
        from reelrt.export.recurrent import text_classifier
        texts = Path(args.texts).read_text(encoding="utf-8").splitlines() if args.texts else ()
        parts = {k: getattr(args, k) for k in ("embedding", "rnn", "head_module") if getattr(args, k)}
        out = text_classifier(args.out, args.module, args.tokenizer, checkpoint=args.checkpoint,
                              module_kwargs=args.module_kwargs, labels=args.labels, head=args.head,
                              threshold=args.threshold, max_length=args.max_length,
                              texts=[t for t in texts if t.strip()], lowercase=args.lowercase,
                              unk_token=args.unk_token, random_weights=args.random_weights,
                              parts={("head" if k == "head_module" else k): v for k, v in parts.items()})
    elif args.checkpoint:
        checkpoint = Checkpoint.load(args.checkpoint)
        out = export_bundle(checkpoint, args.out, "reelrt train lstm", args.checkpoint, random_weights=False)
    else:
        checkpoint = random_checkpoint(args.vocab_size, args.hidden)
        out = export_bundle(checkpoint, args.out, f"random init (vocab {args.vocab_size}, hidden {args.hidden})",
                            random_weights=True)
    from reelrt.runtime.bundle import open_bundle
    validation = open_bundle(out).manifest.validation
    print(f"wrote {out}: ONNX vs PyTorch max |diff| {validation['pytorch']['max_abs_diff']:.2e},"
          f" padded vs single {validation['padded_vs_single']['max_abs_diff']:.2e}"
          + (f", held-out accuracy {validation['heldout_accuracy']:.2%}" if "heldout_accuracy" in validation else ""))
    return 0
