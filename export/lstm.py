"""`reelrt export lstm`: the LSTM classifier as one ONNX LSTM op per layer, padding-exact.

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
from reelrt.runtime.validation import Comparison, check, compare
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.bundle.layout import REFERENCE_INPUTS, REFERENCE_OUTPUTS
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec
from reelrt.runtime.tasks.text import encode

OPSET = 17
HELDOUT = "heldout.csv"       # labelled rows the model never trained on: accuracy after quantization
VALIDATION_TEXTS = 64
# the reference set's texts when the checkpoint holds no held-out rows (random weights)
REFERENCE_TEXTS = ("The captain ordered the ship out of orbit before the shields failed.",
                   "Nothing beats fresh bread with garlic butter on a cold evening.",
                   "The kernel panicked after the new driver was loaded.",
                   "She scored twice in the final minutes and the crowd went wild.",
                   "Love is patient, love is kind, and it keeps no record of wrongs.",
                   "Beam me up.", "Pass the salt, please.",
                   "Any sufficiently advanced technology is indistinguishable from magic.")


def lstm_weights(lstm, layer: int, suffix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction of one layer as ONNX W (4H, in), R (4H, H), B (8H).

    PyTorch orders the gates i, f, g, o; ONNX orders them i, o, f, c (c is PyTorch's g).
    """
    def reorder(t):
        i, f, g, o = np.split(t.detach().numpy(), 4, axis=0)
        return np.concatenate([i, o, f, g], axis=0)
    w = reorder(getattr(lstm, f"weight_ih_l{layer}{suffix}"))
    r = reorder(getattr(lstm, f"weight_hh_l{layer}{suffix}"))
    b = np.concatenate([reorder(getattr(lstm, f"bias_ih_l{layer}{suffix}")),
                        reorder(getattr(lstm, f"bias_hh_l{layer}{suffix}"))])
    return w, r, b


def build_onnx(model, path: Path) -> None:
    """Write the classifier's graph: inputs input_ids int64 (batch, sequence) and lengths
    int32 (batch,), output logits float32 (batch, classes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    config = model.config
    suffixes = [""] + (["_reverse"] if config.bidirectional else [])
    inits = [numpy_helper.from_array(model.embedding.weight.detach().numpy(), "embedding"),
             numpy_helper.from_array(model.head.weight.detach().numpy(), "head.weight"),
             numpy_helper.from_array(model.head.bias.detach().numpy(), "head.bias")]
    # the shapes and axes the reshapes between layers and before the head need
    constants = {"shape_tb_": [0, 0, -1], "shape_b_": [0, -1], "axis0": [0], "axis1": [1]}
    nodes = [helper.make_node("Transpose", ["input_ids"], ["ids_tb"], perm=[1, 0]),   # time-major, cheap on ints
             helper.make_node("Gather", ["embedding", "ids_tb"], ["x0"])]
    x = "x0"
    for layer in range(config.layers):
        w, r, b = zip(*(lstm_weights(model.lstm, layer, s) for s in suffixes))
        for name, value in (("W", w), ("R", r), ("B", b)):
            inits.append(numpy_helper.from_array(np.stack(value).astype(np.float32), f"lstm{layer}.{name}"))
        last = layer == config.layers - 1
        y = "" if last else f"y{layer}"
        nodes.append(helper.make_node(
            "LSTM", [x, f"lstm{layer}.W", f"lstm{layer}.R", f"lstm{layer}.B", "lengths"], [y, f"h{layer}"],
            name=f"lstm{layer}", hidden_size=config.hidden,
            direction="bidirectional" if config.bidirectional else "forward"))
        if not last:  # Y (time, directions, batch, hidden) -> next input (time, batch, directions * hidden)
            x = f"x{layer + 1}"
            if config.bidirectional:
                nodes += [helper.make_node("Transpose", [y], [f"{y}_t"], perm=[0, 2, 1, 3]),
                          helper.make_node("Reshape", [f"{y}_t", "shape_tb_"], [x])]
            else:
                nodes.append(helper.make_node("Squeeze", [y, "axis1"], [x]))
    h = f"h{config.layers - 1}"   # final states (directions, batch, hidden), each at its own length
    if config.bidirectional:
        nodes += [helper.make_node("Transpose", [h], ["h_t"], perm=[1, 0, 2]),
                  helper.make_node("Reshape", ["h_t", "shape_b_"], ["features"])]
    else:
        nodes.append(helper.make_node("Squeeze", [h, "axis0"], ["features"]))
    nodes.append(helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["logits"], transB=1))
    used = {name for node in nodes for name in node.input}
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items() if k in used]
    graph = helper.make_graph(
        nodes, "lstm_classifier",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", config.num_classes])],
        inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="reelrt")
    onnx_model.ir_version = 9
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save_model(onnx_model, str(path))


def onnx_logits(path: Path, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Logits of an exported (or quantized) graph with a plain ONNX Runtime session."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_ids": ids, "lengths": lengths})[0]


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


def padded_vs_single(path: Path, ids: np.ndarray, lengths: np.ndarray) -> Comparison:
    """Each row of the padded batch against the same text run alone at its own length."""
    batch = onnx_logits(path, ids, lengths)
    alone = np.concatenate([onnx_logits(path, ids[i:i + 1, :n], lengths[i:i + 1]) for i, n in enumerate(lengths)])
    return compare(alone, batch)


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


def write_reference(checkpoint, directory: Path, max_length: int) -> None:
    """reference/: real texts (held-out rows, else REFERENCE_TEXTS) as the graph's feeds, and
    PyTorch's logits for them: what quantize and compile check a new graph against."""
    texts = [text for text, _ in checkpoint.heldout[:VALIDATION_TEXTS]] or list(REFERENCE_TEXTS)
    ids, lengths = encode(checkpoint.tokenizer, texts, max_length, 0)
    (directory / "reference").mkdir()
    np.savez(directory / REFERENCE_INPUTS, input_ids=ids, lengths=lengths)
    np.savez(directory / REFERENCE_OUTPUTS, logits=torch_logits(checkpoint.model, ids, lengths))


def write_heldout(rows: list[tuple[str, str]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def export_bundle(checkpoint, out: str | Path, source: str, checkpoint_path: str | None = None) -> Path:
    """Write and validate a bundle for a checkpoint (trained or random)."""
    from reelrt.models.lstm import PAD_ID

    config = checkpoint.model.config
    max_length = checkpoint.max_length
    with BundleWriter(out) as w:
        build_onnx(checkpoint.model.eval(), w.dir / "model.onnx")
        checkpoint.tokenizer.save(str(w.dir / "tokenizer.json"))
        validation = validate(checkpoint, w.dir / "model.onnx", max_length)
        write_reference(checkpoint, w.dir, max_length)
        extra = {"vocab_size": config.vocab_size, "embed_dim": config.embed_dim, "hidden": config.hidden,
                 "layers": config.layers, "bidirectional": config.bidirectional}
        if checkpoint.heldout:
            write_heldout(checkpoint.heldout, w.dir / HELDOUT)
            extra["heldout"] = HELDOUT
        manifest = Manifest(
            family="lstm", task="text-classification", precision="fp32", model="model.onnx",
            inputs=[TensorSpec("input_ids", "int64", ("batch", "sequence")), TensorSpec("lengths", "int32", ("batch",))],
            outputs=[TensorSpec("logits", "float32", ("batch", config.num_classes))],
            artifacts={}, labels=list(checkpoint.labels),
            tokenizer={"path": "tokenizer.json", "max_length": max_length, "pad_id": PAD_ID,
                       "vocab_size": checkpoint.tokenizer.get_vocab_size(), "truncation": "keep the first max_length tokens"},
            provenance=provenance(source, checkpoint_path, train_metrics=checkpoint.metrics or None),
            validation=validation, extra=extra)
        return w.commit(manifest)


def main(args: argparse.Namespace) -> int:
    from reelrt.models.lstm import Checkpoint, random_checkpoint

    if args.checkpoint:
        checkpoint = Checkpoint.load(args.checkpoint)
        out = export_bundle(checkpoint, args.out, "reelrt train lstm", args.checkpoint)
    else:
        checkpoint = random_checkpoint(args.vocab_size, args.hidden)
        out = export_bundle(checkpoint, args.out, f"random init (vocab {args.vocab_size}, hidden {args.hidden})")
    from reelrt.runtime.bundle import open_bundle
    validation = open_bundle(out).manifest.validation
    print(f"wrote {out}: ONNX vs PyTorch max |diff| {validation['pytorch']['max_abs_diff']:.2e},"
          f" padded vs single {validation['padded_vs_single']['max_abs_diff']:.2e}"
          + (f", held-out accuracy {validation['heldout_accuracy']:.2%}" if "heldout_accuracy" in validation else ""))
    return 0
