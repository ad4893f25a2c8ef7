"""Text classification: strings in, labels with probabilities out.

The bundle carries its tokenizer (tokenizer.json, read with the `tokenizers` package) and
the longest sequence it was made for; texts are tokenized, cut to that length, grouped
with texts of similar length (so short texts are not padded to a long neighbour's
length) and run in batches. The graph takes each text's length, so padding never
changes an answer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from reelrt.runtime.backends.session import ThreadPolicy
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.bundle.manifest import Manifest
from reelrt.runtime.errors import BundleError, InputError
from reelrt.runtime.tasks.model import Model
from reelrt.runtime.tasks.ranking import Head, read_head
from reelrt.runtime.tasks.tokenizer import read_tokenizer

if TYPE_CHECKING:  # the `text` extra, imported by read_tokenizer
    from tokenizers import Tokenizer

DEFAULT_BATCH = 16


def tokenizer_limits(manifest: Manifest) -> tuple[int, int]:
    """The manifest's max length and pad id; BundleError when either is unusable."""
    spec = manifest.tokenizer
    max_length, pad_id = spec.get("max_length"), spec.get("pad_id")
    if type(max_length) is not int or max_length < 1:
        raise BundleError(f"manifest.tokenizer.max_length must be a positive integer, got {max_length!r}")
    if type(pad_id) is not int or pad_id < 0:
        raise BundleError(f"manifest.tokenizer.pad_id must be a non-negative integer, got {pad_id!r}")
    return max_length, pad_id


def load_tokenizer(bundle: Bundle) -> tuple[Tokenizer, int, int]:
    """The bundle's tokenizer, max length and pad id; BundleError when any is unusable."""
    max_length, pad_id = tokenizer_limits(bundle.manifest)
    tokenizer = read_tokenizer(bundle)
    pad_to_longest(tokenizer, max_length, pad_id)
    return tokenizer, max_length, pad_id


def pad_to_longest(tokenizer: Tokenizer, max_length: int, pad_id: int) -> None:
    """Set the tokenizer's own truncation (first max_length tokens) and padding (to the
    longest text of a batch, with pad_id); a no-op when it is already set so."""
    if (tokenizer.truncation or {}).get("max_length") != max_length or tokenizer.truncation.get("direction") != "right":
        tokenizer.enable_truncation(max_length, direction="right")
    if (tokenizer.padding or {}).get("pad_id") != pad_id or tokenizer.padding.get("length") is not None:
        tokenizer.enable_padding(pad_id=pad_id, pad_token=tokenizer.id_to_token(pad_id) or "[PAD]")


def encode(tokenizer: Tokenizer, texts: Sequence[str], max_length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (N, longest kept length) padded with pad_id, and each text's length (N,) as int32.

    Every text keeps its first max_length tokens. A text that is not a str, or that holds
    no token (empty, only spaces), raises InputError naming its position.
    """
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"text {i} is a {type(text).__name__}, not a str")
    pad_to_longest(tokenizer, max_length, pad_id)
    try:
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    except Exception as e:  # e.g. lone surrogates, which are not valid UTF-8
        raise InputError(f"cannot tokenize the texts: {e}") from None
    lengths = np.array([sum(e.attention_mask) for e in encodings], np.int32)
    for i, length in enumerate(lengths):
        if not length:
            raise InputError(f"text {i} ({texts[i][:40]!r}) holds no token to classify")
    if not encodings:
        return np.zeros((0, 1), np.int64), lengths
    return np.array([e.ids for e in encodings], np.int64), lengths


class TextClassifier(Model):
    """classify("Loved it") -> [(label, prob), ...]; classify([...]) -> one such list per text.

    The manifest's head decides what the answer is: softmax (the most likely labels), sigmoid
    (one logit, [negative, positive] ordered by the threshold) or multi-label (every label at or
    over the threshold, possibly none)."""

    submits = "classify"

    def __init__(self, bundle: Bundle, device: str = "auto", threads: ThreadPolicy | int | None = None,
                 batch_size: int = DEFAULT_BATCH):
        if type(batch_size) is not int or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        # every check of the bundle comes before the session: a bad bundle never reaches ONNX Runtime
        m = bundle.manifest
        self.head = self.check_manifest(m)
        self.tokenizer, self.max_length, self.pad_id = load_tokenizer(bundle)
        self.labels = list(m.labels)
        self.outputs = m.outputs[0].shape[-1]
        self.batch_size = batch_size
        self.vocab_size = m.extra["vocab_size"]
        super().__init__(bundle, device, threads)

    @classmethod
    def check_manifest(cls, m: Manifest) -> Head:
        """What the reader requires of a text-classification manifest (writers check with it too)."""
        names = [s.name for s in m.inputs]
        if names != ["input_ids", "lengths"]:
            raise BundleError(f"a text-classification graph takes inputs ['input_ids', 'lengths'], this one {names}")
        if not m.labels:
            raise BundleError("a text-classification bundle needs labels")
        head = read_head(m.head, m.outputs[0].shape[-1], m.labels)
        tokenizer_limits(m)
        vocab_size = m.extra.get("vocab_size")
        if type(vocab_size) is not int or vocab_size < 1:
            raise BundleError(f"manifest.extra.vocab_size must be a positive integer, got {vocab_size!r}")
        return head

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(N, labels) probabilities under the manifest's head, in the order of `texts`."""
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
            raise InputError(f"texts must be a sequence of str, got {type(texts).__name__}")
        if not texts:
            return np.zeros((0, len(self.labels)), np.float32)
        return self.head.probabilities(self.logits(*encode(self.tokenizer, texts, self.max_length, self.pad_id)))

    def logits(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(N, outputs) logits for token ids (N, width) int64 and lengths (N,) int32, in their order.

        Rows are sorted by length and run batch_size at a time, so that short texts are
        not padded to a long neighbour's length (the LSTM would skip the padding anyway,
        but every run costs as many steps as its longest row).
        """
        if not isinstance(ids, np.ndarray) or not isinstance(lengths, np.ndarray):
            raise InputError(f"ids and lengths must be numpy arrays, got {type(ids).__name__} and {type(lengths).__name__}")
        if ids.ndim != 2 or lengths.shape != ids.shape[:1]:
            raise InputError(f"ids must be (N, width) and lengths (N,), got {ids.shape} and {lengths.shape}")
        if len(lengths) and (lengths.min() < 1 or lengths.max() > ids.shape[1]):
            raise InputError(f"lengths must lie in 1..{ids.shape[1]} (the width of ids)")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise InputError(f"token ids must lie in 0..{self.vocab_size - 1}")
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(order), self.outputs), np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = int(lengths[rows].max())
            feeds = {"input_ids": np.ascontiguousarray(ids[rows, :width]), "lengths": lengths[rows]}
            out[rows] = self.run(feeds)["logits"]
        return out

    def classify(self, texts: str | Sequence[str], top_k: int | None = None):
        """Labels with probabilities, most likely first: for one str a list of (label, prob),
        for a sequence of str one such list per text. top_k=None returns every label (a
        multi-label head: every label at or over its threshold)."""
        single = isinstance(texts, str)
        if top_k is not None and (type(top_k) is not int or top_k < 1):
            raise InputError(f"top_k must be a positive int or None, got {top_k!r}")
        probs = self.probabilities([texts] if single else texts)
        k = min(top_k or len(self.labels), len(self.labels))
        results = [[(self.labels[j], float(p[j])) for j in self.head.rank(p, k)] for p in probs]
        return results[0] if single else results
