"""The key/value-cache loop around a GPT-2 decoder graph, with IO binding.

The cache is one float32 buffer per layer and kind, [rows, n_head, max_context, head_dim],
allocated once (zero pages cost no memory until touched) and bound as both the past input
and the present output of GroupQueryAttention, which then writes each new key and value in
place: a decode step copies no cache. Decode inputs (token, position, attention mask) live
in numpy arrays bound once and updated in place.

The graph's inputs and outputs are onnxruntime-genai's decoder names (input_ids,
attention_mask, position_ids, past_key_values.<i>.key/value -> logits, present.<i>.key/value);
the graph derives GroupQueryAttention's lengths from the mask (seqlens_k = its row sums - 1,
total_sequence_length = its width). A decode step's mask is one [rows, max_context] buffer
allocated with the cache and bound once: each step writes row r's ones in its first
length_r + 1 places and zeros after, from `lengths` alone, so the row lengths stay the
decoder's only state (the attention reads each row up to its own length, whatever the mask's
width; genai passes the exact width, with the same answers).

Prefill runs one row at a time on a view of that row's cache, so each prompt gets its own
exact length (no padding) and a batch gives the same tokens as single prompts; decode steps
run all rows together, each row at its own length.

This is the engine's runner: it knows rows, lengths and the cache, never requests. A scheduler
asks `decode_rows` for any set of rows; rows outside the set but inside the span the graph runs
over keep their lengths (their dummy step writes past what they hold, which nothing reads).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import onnxruntime as ort

from reelrt.runtime.bundle.manifest import TensorSpec
from reelrt.runtime.errors import BundleError, InputError
from reelrt.runtime.tasks.generation.config import DecoderConfig

# onnxruntime-genai's names for the cache (export/gpt2_graph.py writes them, genai_config.json names them)
PAST = "past_key_values.{layer}.{kind}"
PRESENT = "present.{layer}.{kind}"
KINDS = ("key", "value")


class KVDecoder:
    """Prefill and decode steps of one decoder session over a preallocated cache."""

    def __init__(self, session: ort.InferenceSession, n_layer: int, n_head: int, head_dim: int, max_context: int,
                 vocab_size: int):
        self.session = session
        self.n_layer, self.n_head, self.head_dim = n_layer, n_head, head_dim
        self.max_context, self.vocab_size = max_context, vocab_size
        self.rows = 0
        self.lengths = np.zeros(0, np.int64)
        self.reserve(1)
        self.active = 1

    @classmethod
    def from_config(cls, session: ort.InferenceSession, config: DecoderConfig) -> KVDecoder:
        return cls(session, config.n_layer, config.n_head, config.head_dim, config.max_context, config.vocab_size)

    @classmethod
    def from_facts(cls, session: ort.InferenceSession, facts: Mapping) -> KVDecoder:
        """A decoder sized by a GPT-2 bundle's facts (manifest.extra, or export's before the write)."""
        return cls.from_config(session, DecoderConfig.from_facts(facts))

    def reserve(self, rows: int) -> bool:
        """Allocate the cache for `rows` sequences (kept for later calls); True when it was
        reallocated, which empties every row."""
        if rows <= self.rows:
            return False
        shape = (rows, self.n_head, self.max_context, self.head_dim)
        self.cache = {(i, kind): np.zeros(shape, np.float32) for i in range(self.n_layer) for kind in KINDS}
        self.rows = rows
        self.lengths = np.zeros(rows, np.int64)
        self._steps: dict[int, _DecodeStep] = {}
        self._mask = np.zeros((rows, self.max_context), np.int64)   # decode steps' mask, rewritten at each step
        self._columns = np.arange(self.max_context, dtype=np.int64)
        self._ones = np.ones((1, self.max_context), np.int64)       # a prefill's mask: one row, all ones
        return True

    def _bind(self, row: int, rows: int, ids, mask, positions, logits) -> ort.IOBinding:
        binding = self.session.io_binding()
        for name, array in (("input_ids", ids), ("attention_mask", mask), ("position_ids", positions)):
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        for (layer, kind), buffer in self.cache.items():
            view = ort.OrtValue.ortvalue_from_numpy(buffer[row:row + rows])  # contiguous: rows are the outer axis
            binding.bind_ortvalue_input(PAST.format(layer=layer, kind=kind), view)
            binding.bind_ortvalue_output(PRESENT.format(layer=layer, kind=kind), view)
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        return binding

    def start(self, rows: int) -> None:
        """Begin a new batch of `rows` sequences; the old cache contents are simply overwritten."""
        self.reserve(rows)
        self.lengths[:] = 0
        self.active = rows

    def prefill(self, row: int, ids: np.ndarray, start: int = 0) -> np.ndarray:
        """Run prompt tokens (1-D int64 ids) for one row after the first `start` tokens already in
        its cache (0: a whole prompt; more: the rest of a cached prefix, or the next chunk of a
        long prompt); return the next-token logits [vocab]."""
        n = len(ids)
        if n == 0:
            raise InputError("a prompt must hold at least one token")
        if not 0 <= start <= self.lengths[row]:
            raise InputError(f"row {row} holds {self.lengths[row]} cached tokens, not {start}")
        total = start + n
        if total > self.max_context:
            raise InputError(f"{total} tokens exceed the model's maximum context of {self.max_context}")
        logits = np.empty((1, 1, self.vocab_size), np.float32)
        binding = self._bind(row, 1, np.ascontiguousarray(ids, np.int64).reshape(1, n), self._ones[:, :total],
                             np.arange(start, total, dtype=np.int64).reshape(1, n), logits)
        self.session.run_with_iobinding(binding)
        self.lengths[row] = total
        return logits[0, 0]

    def rewind(self, length: int) -> None:
        """Keep only the first `length` tokens of every active row (later steps overwrite the rest)."""
        self.lengths[:self.active] = np.minimum(self.lengths[:self.active], length)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Append one token to each active row; return next-token logits [active, vocab] (a view,
        overwritten by the next step)."""
        rows = self.active
        lengths = self.lengths[:rows]
        if int(lengths.max()) >= self.max_context:
            raise InputError(f"the sequence reached the model's maximum context of {self.max_context}")
        step = self._steps.get(rows)
        if step is None:
            step = self._steps[rows] = _DecodeStep(rows, self.vocab_size)
            step.binding = self._bind(0, rows, step.token, self._mask[:rows], step.position, step.logits)
        step.token[:, 0] = tokens
        step.position[:, 0] = lengths
        np.less_equal(self._columns, lengths[:, None], out=self._mask[:rows])  # each row's tokens and this step's
        self.session.run_with_iobinding(step.binding)
        lengths += 1
        return step.logits[:, 0]


    def decode_rows(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Append tokens[i] to row rows[i], for any set of distinct rows; return next-token logits
        indexed by row, [max(rows) + 1, vocab] (a view, overwritten by the next step). Rows
        between them that are not in the set keep their lengths; one that is full loses its last
        cached token (its dummy step has no room)."""
        rows = np.asarray(rows, np.int64)
        span = int(rows.max()) + 1
        if len(rows) == span:  # every row of the span decodes: none to keep aside
            feed = np.empty(span, np.int64)
            feed[rows] = tokens
            self.active = span
            return self.decode(feed)
        idle = np.ones(span, bool)
        idle[rows] = False
        kept = self.lengths[:span][idle].copy()
        full = kept >= self.max_context
        kept[full] = self.max_context - 1
        self.lengths[:span][idle] = kept
        feed = np.zeros(span, np.int64)
        feed[rows] = tokens
        self.active = span
        logits = self.decode(feed)
        self.lengths[:span][idle] = kept
        return logits

    def truncate(self, row: int, length: int) -> None:
        """Keep only the first `length` tokens of one row."""
        if not 0 <= length <= self.lengths[row]:
            raise InputError(f"row {row} holds {self.lengths[row]} cached tokens, not {length}")
        self.lengths[row] = length

    def copy_row(self, source: int, target: int, length: int) -> None:
        """Give row `target` the first `length` cached tokens of row `source` (a shared prefix)."""
        if not 0 <= length <= self.lengths[source]:
            raise InputError(f"row {source} holds {self.lengths[source]} cached tokens, not {length}")
        for buffer in self.cache.values():
            buffer[target, :, :length] = buffer[source, :, :length]
        self.lengths[target] = length

    def length(self, row: int) -> int:
        """Tokens row `row` holds in the cache."""
        return int(self.lengths[row])


class _DecodeStep:
    """The inputs and outputs of a decode step for a number of rows, bound once."""

    def __init__(self, rows: int, vocab_size: int):
        self.token = np.zeros((rows, 1), np.int64)
        self.position = np.zeros((rows, 1), np.int64)
        self.logits = np.zeros((rows, 1, vocab_size), np.float32)
        self.binding: ort.IOBinding | None = None


def prefill_feeds(specs: list[TensorSpec], ids: np.ndarray) -> dict[str, np.ndarray]:
    """Plain (unbound) feeds for one prompt's prefill on an empty cache, built from the graph's
    declared inputs: the reference feeds that quantize and compile run a decoder graph on.

    Integer inputs are told by their role (token ids, positions, the attention mask, GroupQuery-
    Attention's lengths); every float input is cache, zeros of its declared shape with a batch
    of one and any other symbolic axis (a past length) empty."""
    ids = np.ascontiguousarray(ids, np.int64).reshape(1, -1)
    n = ids.shape[1]
    by_role = {"input_ids": ids, "position_ids": np.arange(n, dtype=np.int64)[None],
               "attention_mask": np.ones((1, n), np.int64), "seqlens_k": np.array([n - 1]),
               "total_sequence_length": np.array(n)}
    feeds = {}
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            shape = tuple(d if isinstance(d, int) else 1 if i == 0 else 0 for i, d in enumerate(spec.shape))
            feeds[spec.name] = np.zeros(shape, dtype)
        elif spec.name in by_role:
            feeds[spec.name] = by_role[spec.name].astype(dtype)
        else:
            raise BundleError(f"no prefill value for the decoder input {spec.name!r}")
    return feeds
