"""Recurrent text classifiers, the built-in one and the user's: Embedding -> nn.LSTM or nn.GRU
(any layers, either direction, batch_first either way) -> Linear head, as one padding-exact graph.

The graph is written from the weights: Gather (embedding) -> one ONNX LSTM or GRU op per layer
with `sequence_lens` -> Gemm on the last layer's final hidden states (forward direction after
each text's last token, then backward after its first). torch.onnx cannot write this (see
export/lstm.py). A user module is found by module type (exactly one Embedding, one LSTM/GRU and
one Linear taking the RNN's features) or by the names the user gives, and the written graph is
checked against the user's own module run on each text alone, and each padded row against
the same text alone; anything else refuses the write naming what was expected.

Heads: softmax over classes; one logit read as sigmoid (binary: labels [negative, positive],
a threshold in the manifest); one sigmoid per label (multi-label). The runtime applies the
head the manifest names (runtime/tasks/ranking.py).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.bundle.layout import REFERENCE_INPUTS, REFERENCE_OUTPUTS
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec
from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.ranking import Head
from reelrt.runtime.tasks.text import encode
from reelrt.runtime.validation import Comparison, ValidationError, check, compare

OPSET = 17
EXPECTED = ("Embedding -> nn.LSTM or nn.GRU -> Linear head, the head taking the last layer's final hidden"
            " states (forward, then backward when bidirectional) and returning logits")
DEFAULT_MAX_LENGTH = 256
# ONNX orders the gates differently from PyTorch: LSTM i, o, f, c (PyTorch i, f, g, o);
# GRU z, r, h (PyTorch r, z, n). Indices of PyTorch's chunks in ONNX's order.
GATE_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2]}
# the reference set's texts when the checkpoint holds no held-out rows (random weights)
REFERENCE_TEXTS = ("The captain ordered the ship out of orbit before the shields failed.",
                   "Nothing beats fresh bread with garlic butter on a cold evening.",
                   "The kernel panicked after the new driver was loaded.",
                   "She scored twice in the final minutes and the crowd went wild.",
                   "Love is patient, love is kind, and it keeps no record of wrongs.",
                   "Beam me up.", "Pass the salt, please.",
                   "Any sufficiently advanced technology is indistinguishable from magic.")


@dataclass
class RecurrentParts:
    """The three modules the graph is written from."""
    embedding: Any    # nn.Embedding
    rnn: Any          # nn.LSTM or nn.GRU
    head: Any         # nn.Linear

    @property
    def op(self) -> str:
        from torch import nn
        return "GRU" if isinstance(self.rnn, nn.GRU) else "LSTM"

    @property
    def directions(self) -> int:
        return 2 if self.rnn.bidirectional else 1


def find_parts(module, embedding: str | None = None, rnn: str | None = None, head: str | None = None) -> RecurrentParts:
    """The Embedding, LSTM/GRU and head Linear of `module`, by type or by the names given;
    InputError naming what was expected and what was found otherwise."""
    from torch import nn

    named = dict(module.named_modules())

    def pick(name: str | None, kinds: tuple, what: str, fits: Callable[[Any], bool] = lambda m: True):
        if name is not None:
            if name not in named or not isinstance(named[name], kinds):
                raise InputError(f"the module has no {what} named {name!r}; its {what}s:"
                                 f" {[n for n, m in named.items() if isinstance(m, kinds)] or 'none'}")
            return named[name]
        found = [m for m in named.values() if isinstance(m, kinds) and fits(m)]
        if len(found) != 1:
            names = [n for n, m in named.items() if isinstance(m, kinds)]
            raise InputError(f"expected {EXPECTED}; found {len(names)} {what}(s) {names} (name the parts with"
                             f" --embedding/--rnn/--head)")
        return found[0]

    rnn_module = pick(rnn, (nn.LSTM, nn.GRU), "nn.LSTM/nn.GRU")
    features = rnn_module.hidden_size * (2 if rnn_module.bidirectional else 1)
    parts = RecurrentParts(pick(embedding, (nn.Embedding,), "nn.Embedding"), rnn_module,
                           pick(head, (nn.Linear,), "nn.Linear head", lambda m: m.in_features == features))
    problems = []
    if parts.embedding.embedding_dim != rnn_module.input_size:
        problems.append(f"the embedding is {parts.embedding.embedding_dim} wide, the RNN takes {rnn_module.input_size}")
    if parts.head.in_features != features:
        problems.append(f"the head takes {parts.head.in_features} features, the RNN gives {features}")
    if getattr(rnn_module, "proj_size", 0):
        problems.append("LSTM projections (proj_size) have no ONNX LSTM equivalent")
    others = [n for n, m in named.items() if n and not list(m.children()) and any(True for _ in m.parameters(False))
              and m not in (parts.embedding, parts.rnn, parts.head)]
    if others:
        problems.append(f"other layers with weights ({', '.join(others)}) lie outside that shape")
    if problems:
        raise InputError(f"expected {EXPECTED}: " + "; ".join(problems))
    return parts


def gate_weights(parts: RecurrentParts, layer: int, suffix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One direction of one layer as ONNX W (gates*H, in), R (gates*H, H), B (2*gates*H)."""
    order = GATE_ORDER[parts.op]

    def reorder(t) -> np.ndarray:
        chunks = np.split(t.detach().float().numpy(), len(order), axis=0)
        return np.concatenate([chunks[i] for i in order], axis=0)

    rnn = parts.rnn
    w = reorder(getattr(rnn, f"weight_ih_l{layer}{suffix}"))
    r = reorder(getattr(rnn, f"weight_hh_l{layer}{suffix}"))
    if rnn.bias:
        b = np.concatenate([reorder(getattr(rnn, f"bias_ih_l{layer}{suffix}")),
                            reorder(getattr(rnn, f"bias_hh_l{layer}{suffix}"))])
    else:
        b = np.zeros(2 * w.shape[0], np.float32)
    return w, r, b


def build_graph(parts: RecurrentParts, path: Path) -> None:
    """Write the classifier's graph: inputs input_ids int64 (batch, sequence) and lengths
    int32 (batch,), output logits float32 (batch, outputs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rnn, op = parts.rnn, parts.op
    bidirectional = rnn.bidirectional
    suffixes = [""] + (["_reverse"] if bidirectional else [])
    inits = [numpy_helper.from_array(parts.embedding.weight.detach().float().numpy(), "embedding"),
             numpy_helper.from_array(parts.head.weight.detach().float().numpy(), "head.weight"),
             numpy_helper.from_array(parts.head.bias.detach().float().numpy() if parts.head.bias is not None
                                     else np.zeros(parts.head.out_features, np.float32), "head.bias")]
    # the shapes and axes the reshapes between layers and before the head need
    constants = {"shape_tb_": [0, 0, -1], "shape_b_": [0, -1], "axis0": [0], "axis1": [1]}
    nodes = [helper.make_node("Transpose", ["input_ids"], ["ids_tb"], perm=[1, 0]),   # time-major, cheap on ints
             helper.make_node("Gather", ["embedding", "ids_tb"], ["x0"])]
    x = "x0"
    extra_attributes = {"linear_before_reset": 1} if op == "GRU" else {}   # PyTorch's GRU
    for layer in range(rnn.num_layers):
        w, r, b = zip(*(gate_weights(parts, layer, s) for s in suffixes))
        for name, value in (("W", w), ("R", r), ("B", b)):
            inits.append(numpy_helper.from_array(np.stack(value).astype(np.float32), f"{op.lower()}{layer}.{name}"))
        last = layer == rnn.num_layers - 1
        y = "" if last else f"y{layer}"
        prefix = f"{op.lower()}{layer}"
        nodes.append(helper.make_node(
            op, [x, f"{prefix}.W", f"{prefix}.R", f"{prefix}.B", "lengths"], [y, f"h{layer}"],
            name=prefix, hidden_size=rnn.hidden_size, direction="bidirectional" if bidirectional else "forward",
            **extra_attributes))
        if not last:  # Y (time, directions, batch, hidden) -> next input (time, batch, directions * hidden)
            x = f"x{layer + 1}"
            if bidirectional:
                nodes += [helper.make_node("Transpose", [y], [f"{y}_t"], perm=[0, 2, 1, 3]),
                          helper.make_node("Reshape", [f"{y}_t", "shape_tb_"], [x])]
            else:
                nodes.append(helper.make_node("Squeeze", [y, "axis1"], [x]))
    h = f"h{rnn.num_layers - 1}"   # final states (directions, batch, hidden), each at its own length
    if bidirectional:
        nodes += [helper.make_node("Transpose", [h], ["h_t"], perm=[1, 0, 2]),
                  helper.make_node("Reshape", ["h_t", "shape_b_"], ["features"])]
    else:
        nodes.append(helper.make_node("Squeeze", [h, "axis0"], ["features"]))
    nodes.append(helper.make_node("Gemm", ["features", "head.weight", "head.bias"], ["logits"], transB=1))
    used = {name for node in nodes for name in node.input}
    inits += [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items() if k in used]
    graph = helper.make_graph(
        nodes, "recurrent_classifier",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", parts.head.out_features])],
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


def padded_vs_single(path: Path, ids: np.ndarray, lengths: np.ndarray) -> Comparison:
    """Each row of the padded batch against the same text run alone at its own length."""
    batch = onnx_logits(path, ids, lengths)
    alone = np.concatenate([onnx_logits(path, ids[i:i + 1, :n], lengths[i:i + 1]) for i, n in enumerate(lengths)])
    return compare(alone, batch)


def module_logits(module, rnn, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The user's own module on each text alone (no padding at all): the ground truth.

    Each text goes in as (1, length) ids, or as (length, 1) when the RNN is sequence-first and
    the module's output says it took the text that way; a forward with a second parameter
    gets the text's length too.
    """
    import torch

    takes_lengths = len([p for p in inspect.signature(module.forward).parameters.values()
                         if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]) >= 2
    rows = []
    with torch.inference_mode():
        for row, n in zip(ids, lengths):
            text = torch.from_numpy(np.ascontiguousarray(row[None, :n]))
            args = (torch.tensor([int(n)]),) if takes_lengths else ()
            out = module(text, *args)
            if isinstance(out, tuple):
                out = out[0]
            if out.shape[0] != 1 and not rnn.batch_first:
                out = module(text.T.contiguous(), *args)
            if out.ndim != 2 or out.shape[0] != 1:
                raise InputError(f"expected {EXPECTED}; for one text the module returned shape {list(out.shape)},"
                                 " not (1, outputs)")
            rows.append(out.float().numpy())
    return np.concatenate(rows)


def validation_ids(vocab_size: int, max_length: int, token_ids: tuple[np.ndarray, np.ndarray] | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch with lengths from 1 to max_length: random ids (the padding after each row is
    random ids too, so a graph reading past a row's length cannot go unnoticed), then real texts."""
    rng = np.random.default_rng(seed)
    lengths = np.array([1, 2, max_length, *rng.integers(1, max_length + 1, 5)], np.int32)
    ids = rng.integers(1, vocab_size, (len(lengths), max_length)).astype(np.int64)
    if token_ids is None:
        return ids, lengths
    text_ids, text_lengths = token_ids
    width = max(ids.shape[1], text_ids.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])))
    return np.concatenate([pad(ids), pad(text_ids)]), np.concatenate([lengths, text_lengths])


def validate_graph(path: Path, ids: np.ndarray, lengths: np.ndarray, reference: np.ndarray, what: str) -> dict:
    """The written graph against the reference logits and padding against single runs; ValidationError otherwise."""
    from reelrt.runtime.tasks.ranking import sigmoid, softmax

    ours = onnx_logits(path, ids, lengths)
    cmp = compare(reference, ours)
    if not cmp.within(_fp32(), top1=False):
        for name, f in (("sigmoid", sigmoid), ("softmax", softmax)):
            if compare(reference, f(ours)).within(_fp32(), top1=False):
                raise InputError(f"the module's forward applies {name} to its logits: export a module that returns"
                                 f" the logits (the bundle's head applies {name} at run time)")
        raise ValidationError(f"the graph disagrees with {what} (max |diff| {cmp.max_abs_diff:.3g}): expected"
                              f" {EXPECTED}")
    return {"pytorch": check(cmp, "fp32", f"ONNX vs {what}", top1=False).to_json(),
            "padded_vs_single": check(padded_vs_single(path, ids, lengths), "fp32",
                                      "padded batch vs each text alone", top1=False).to_json()}


def _fp32():
    from reelrt.runtime.validation import tolerance_for
    return tolerance_for("fp32")


def head_for(outputs: int, kind: str | None, threshold: float, labels: Sequence[str] | None) -> tuple[Head, list[str]]:
    """The head and labels for a classifier with `outputs` logits: softmax by default, sigmoid for one logit."""
    kind = kind or ("sigmoid" if outputs == 1 else "softmax")
    if kind == "sigmoid" and outputs != 1:
        raise InputError(f"a sigmoid head reads one logit; this head has {outputs} (use multi-label for one"
                         " sigmoid per label)")
    if kind != "sigmoid" and outputs == 1:
        raise InputError("one logit is read as a sigmoid: use the sigmoid head (labels [negative, positive])")
    default = ["negative", "positive"] if kind == "sigmoid" else [str(i) for i in range(outputs)]
    chosen = list(labels) if labels is not None else default
    want = 2 if kind == "sigmoid" else outputs
    if len(chosen) != want:
        raise InputError(f"{len(chosen)} labels for a {kind} head over {outputs} logit(s): give {want}"
                         + (" ([negative, positive])" if kind == "sigmoid" else ", in class order"))
    return Head(kind, threshold), chosen


def read_user_tokenizer(tokenizer: Any, lowercase: bool = False, unk_token: str = "[UNK]"):
    """A tokenizers.Tokenizer from one, from a tokenizers JSON (known by its content, whatever the file
    is called), or from a vocabulary file: one token per line (its id the line number) or a JSON
    {token: id}; a vocabulary splits texts at whitespace (lower-cased with `lowercase`), words it
    lacks becoming `unk_token`."""
    import json

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    path = Path(tokenizer)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        try:
            doc = json.loads(text)
        except ValueError:
            if path.suffix == ".json":
                raise
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("model"), dict):   # a tokenizers JSON, whatever its name
            return Tokenizer.from_str(text)
        vocab = doc if isinstance(doc, dict) or path.suffix == ".json" else {
            line.rstrip("\n"): i for i, line in enumerate(text.splitlines())}
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise InputError(f"{path} is neither a tokenizer.json nor a vocabulary file: {e}") from None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise InputError(f"{path}: a JSON vocabulary maps tokens to integer ids")
    if unk_token not in vocab:
        raise InputError(f"{path}: the vocabulary has no {unk_token!r} for unknown words (--unk-token)")
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    return tok


def write_bundle(out: str | os.PathLike, parts: RecurrentParts, tokenizer, labels: Sequence[str], head: Head,
                 max_length: int, pad_id: int, validate: Callable[[Path], dict], provenance: dict,
                 reference: tuple[np.ndarray, np.ndarray, np.ndarray], extra: dict | None = None,
                 files: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """Write, validate (the `validate` callback raises to refuse) and commit a text-classifier bundle.
    reference: real texts' ids and lengths and the source module's logits for them (reference/)."""
    from .torch_onnx import check_manifest

    with BundleWriter(out) as w:
        build_graph(parts, w.dir / "model.onnx")
        tokenizer.save(str(w.dir / "tokenizer.json"))
        (w.dir / "reference").mkdir()
        ids, lengths, logits = reference
        np.savez(w.dir / REFERENCE_INPUTS, input_ids=ids, lengths=lengths)
        np.savez(w.dir / REFERENCE_OUTPUTS, logits=logits)
        for name, write in (files or {}).items():
            write(w.dir / name)
        rnn = parts.rnn
        manifest = Manifest(
            family="lstm", task="text-classification", precision="fp32", model="model.onnx",
            inputs=[TensorSpec("input_ids", "int64", ("batch", "sequence")), TensorSpec("lengths", "int32", ("batch",))],
            outputs=[TensorSpec("logits", "float32", ("batch", parts.head.out_features))],
            artifacts={}, labels=list(labels), head=head.to_json(),
            tokenizer={"path": "tokenizer.json", "max_length": max_length, "pad_id": pad_id,
                       "vocab_size": tokenizer.get_vocab_size(), "truncation": "keep the first max_length tokens"},
            provenance=provenance, validation=validate(w.dir / "model.onnx"),
            extra={"cell": parts.op, "vocab_size": parts.embedding.num_embeddings,
                   "embed_dim": parts.embedding.embedding_dim, "hidden": rnn.hidden_size, "layers": rnn.num_layers,
                   "bidirectional": bool(rnn.bidirectional), **(extra or {})})
        check_manifest(manifest)
        return w.commit(manifest)


def text_classifier(out: str | os.PathLike, module: Any, tokenizer: Any, *, checkpoint: str | os.PathLike | None = None,
                    module_kwargs: dict | None = None, labels: Sequence[str] | str | None = None,
                    head: str | None = None, threshold: float = 0.5, max_length: int = DEFAULT_MAX_LENGTH,
                    texts: Sequence[str] = (), parts: dict[str, str] | None = None, lowercase: bool = False,
                    unk_token: str = "[UNK]", random_weights: bool = False) -> Path:
    """Export the user's recurrent text classifier to a validated fp32 bundle at `out`; return its path.

    module: an nn.Module, or "pkg.mod:Class" / "file.py:Class" built with module_kwargs, weights
      from checkpoint (a state_dict); of the shape Embedding -> nn.LSTM/nn.GRU -> Linear.
    tokenizer: a tokenizer.json, a vocabulary file (see read_user_tokenizer) or a tokenizers.Tokenizer.
    head: "softmax", "sigmoid" (one logit; labels [negative, positive]) or "multi-label"; default
      sigmoid for one logit, softmax otherwise; threshold for the sigmoid heads.
    labels: a list, "a,b,c" or a file with one per line.
    texts: real texts to check the graph on, besides random ids of every length up to max_length.
    parts: {"embedding": name, "rnn": name, "head": name} when finding them by type is ambiguous.
    """
    from reelrt.export.cnn import resolve_labels
    from reelrt.export.image_sources import build_user_module, load_weights, read_state_dict
    from reelrt.export.provenance import provenance

    if isinstance(module, str):
        description, module = module, build_user_module(module, module_kwargs)
    else:
        description = f"{type(module).__name__} module"
    if checkpoint:
        load_weights(module, read_state_dict(checkpoint), checkpoint)
    module = module.eval()
    found = find_parts(module, **(parts or {}))
    tok = read_user_tokenizer(tokenizer, lowercase, unk_token)
    tok.no_truncation()
    tok.no_padding()
    if tok.get_vocab_size() > found.embedding.num_embeddings:
        raise InputError(f"the tokenizer has {tok.get_vocab_size()} tokens, the embedding only"
                         f" {found.embedding.num_embeddings} rows")
    outputs = found.head.out_features
    if isinstance(labels, str):
        labels = resolve_labels(labels, 2 if (head or ("sigmoid" if outputs == 1 else "")) == "sigmoid" else outputs,
                                None)
    chosen_head, chosen_labels = head_for(outputs, head, threshold, labels)
    pad_id = found.embedding.padding_idx if found.embedding.padding_idx is not None else 0
    token_ids = encode(tok, list(texts), max_length, pad_id) if texts else None
    ids, lengths = validation_ids(min(tok.get_vocab_size(), found.embedding.num_embeddings), max_length, token_ids)
    reference = module_logits(module, found.rnn, ids, lengths)
    ref_ids, ref_lengths = token_ids or encode(tok, list(REFERENCE_TEXTS), max_length, pad_id)
    return write_bundle(out, found, tok, chosen_labels, chosen_head, max_length, pad_id,
                        lambda path: validate_graph(path, ids, lengths, reference, f"{description} (each text alone)"),
                        provenance(description, checkpoint, random_weights=random_weights),
                        (ref_ids, ref_lengths, module_logits(module, found.rnn, ref_ids, ref_lengths)))
