"""TextGenerator: GPT-2 text generation from a bundle, streaming or whole, one prompt or a batch.

    gen = reelrt.runtime.load("bundles/gpt2-int4")
    gen.generate("The innkeeper says", max_new_tokens=40, temperature=0.8, top_p=0.9, seed=7)
    for piece in gen.stream("The innkeeper says", stop=["\\n"]):
        print(piece, end="", flush=True)
    gen.generate_ids([464, 4673, 1139], max_new_tokens=16)   # bring your own tokenizer

The key/value cache is allocated once per generator (runtime/decoder.py); a generator serves
one generation at a time, and starting a new one supersedes a stream left unfinished, so an
abandoned stream holds nothing.

Threads: one generator per thread. The cache is the generator's, so a generation that
another thread starts while one is in progress (a stream not yet finished, closed or
dropped included) is refused at once with ReelrtError, never run into the same cache.
A generator may pass from thread to thread between generations; load the bundle once
per thread to generate in parallel.
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from reelrt.runtime.backends import BackendFallbackWarning, OrtBackend, open_backend, open_onnxruntime
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.tasks.generation.decoder import KVDecoder
from reelrt.runtime.tasks.generation.detokenize import Detokenizer
from reelrt.runtime.errors import BackendUnavailableError, BundleError, InputError, ReelrtError
from reelrt.runtime.tasks.model import Model
from reelrt.runtime.tasks.generation.sampling import SamplingParams, next_token
from reelrt.runtime.backends.session import ThreadPolicy
from reelrt.runtime.tasks.tokenizer import read_tokenizer

_LENT = -1  # TextGenerator._owner while a scheduler drives the decoder (lend_decoder)


@dataclass(frozen=True)
class _Request:
    rows: list[list[int]]
    max_new_tokens: int
    params: SamplingParams
    seed: int | None
    stop_ids: frozenset[int]
    vocab_limit: int        # ids at or above this are never produced (tokenizer smaller than the model)


class TextGenerator(Model):
    """A GPT-2 bundle that writes text. Parameters left as None take the manifest's defaults."""

    submits = "generate"

    def __init__(self, bundle: Bundle, device: str = "auto", threads: ThreadPolicy | int | None = None):
        if device not in ("auto", "cpu"):
            # the cache lives in host memory bound by IO binding, and the fp32 graph's
            # GroupQueryAttention has no CUDA kernel (CUDA's takes fp16/bf16)
            raise BackendUnavailableError(f"GPT-2 bundles run on the CPU; device={device!r} is not supported")
        # the backend and model file `reelrt compile` recorded in manifest.target; a target this
        # machine cannot open falls back to ONNX Runtime on the bundle's model with a warning
        self.bundle = bundle
        self.manifest = m = bundle.manifest
        try:
            x = m.extra
            self.n_layer, n_head, head_dim = int(x["n_layer"]), int(x["n_head"]), int(x["head_dim"])
            self.max_context, self.vocab_size = int(x["max_context"]), int(x["vocab_size"])
            self.eos_token_id = m.tokenizer.get("eos_token_id")
            self.tokenizer = read_tokenizer(bundle)
        except ReelrtError:  # a bad bundle, or the text extra missing: already says what to do
            raise
        except Exception as e:  # a missing fact, a bad type, a tokenizer file tokenizers cannot read
            raise BundleError(f"not a usable GPT-2 bundle: {type(e).__name__}: {e}") from None
        self.text_vocab = min(self.tokenizer.get_vocab_size(), self.vocab_size)
        self._init_worker(threads)
        backend = open_backend(bundle, device="cpu", threads=self.threads)  # what `reelrt compile` chose
        if not isinstance(backend, OrtBackend):
            warnings.warn(f"text generation binds its cache as ONNX Runtime buffers, which {backend.name} cannot"
                          " use; running ONNX Runtime on the bundle's model", BackendFallbackWarning, stacklevel=3)
            backend = open_onnxruntime(bundle, m.model, "cpu", self.threads, {})
        self._attach(backend)
        self.decoder = KVDecoder(backend.session, self.n_layer, n_head, head_dim, self.max_context, self.vocab_size)
        self.defaults = m.generation
        self._epoch = 0
        self._owner: int | None = None  # the thread whose generation is in progress, or _LENT
        self._claim = threading.Lock()   # guards _owner and _epoch

    # ---- public entry points -------------------------------------------------------------

    def generate(self, prompt: str | Sequence[str], max_new_tokens: int | None = None, *,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 repetition_penalty: float | None = None, stop: Sequence[str] = (), seed: int | None = None,
                 truncate: bool = False) -> str | list[str]:
        """The continuation of a prompt (or of each prompt of a list), cut before the first stop string."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if _is_str_list(prompt) else None
        if not prompts:
            raise InputError("prompt must be a non-empty string or a non-empty list of strings")
        stops = check_stops(stop)
        request = self._request([self._encode(p) for p in prompts], max_new_tokens, temperature, top_k, top_p,
                                repetition_penalty, seed, None, truncate, text=True)
        rows = [TextPieces(self.tokenizer, stops) for _ in prompts]
        pieces: list[list[str]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        for step in self._steps(request, done):
            for r, token in enumerate(step):
                if token is not None:
                    pieces[r].append(rows[r].push(token))
                    done[r] = rows[r].stopped
        for r, row in enumerate(rows):
            pieces[r].append(row.flush())
        texts = ["".join(p) for p in pieces]
        return texts[0] if isinstance(prompt, str) else texts

    def stream(self, prompt: str, max_new_tokens: int | None = None, *, temperature: float | None = None,
               top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
               stop: Sequence[str] = (), seed: int | None = None, truncate: bool = False) -> Iterator[str]:
        """Yield the continuation in pieces as tokens arrive; the pieces join to what `generate` returns."""
        if not isinstance(prompt, str) or not prompt:
            raise InputError("prompt must be a non-empty string")
        stops = check_stops(stop)
        request = self._request([self._encode(prompt)], max_new_tokens, temperature, top_k, top_p,
                                repetition_penalty, seed, None, truncate, text=True)
        return self._stream(request, stops)

    def generate_ids(self, ids: Sequence[int] | Sequence[Sequence[int]], max_new_tokens: int | None = None, *,
                     temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                     repetition_penalty: float | None = None, seed: int | None = None,
                     stop_token_ids: Sequence[int] | None = None, truncate: bool = False) -> list[int] | list[list[int]]:
        """Token ids in, new token ids out (the stop token excluded), for engines with their own tokenizer.
        stop_token_ids defaults to the end-of-text token; pass () to always run max_new_tokens."""
        single, rows = _id_rows(ids)
        request = self._id_request(rows, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
                                   stop_token_ids, truncate)
        generated: list[list[int]] = [[] for _ in request.rows]
        for step in self._steps(request, [False] * len(request.rows)):
            for r, token in enumerate(step):
                if token is not None:
                    generated[r].append(token)
        return generated[0] if single else generated

    def stream_ids(self, ids: Sequence[int], max_new_tokens: int | None = None, *, temperature: float | None = None,
                   top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
                   seed: int | None = None, stop_token_ids: Sequence[int] | None = None,
                   truncate: bool = False) -> Iterator[int]:
        """Yield new token ids one by one as `generate_ids` would return them (one prompt)."""
        single, rows = _id_rows(ids)
        request = self._id_request(rows if single else None, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
                                   stop_token_ids, truncate)
        return (token for (token,) in self._steps(request, [False]))

    # ---- the shared loop -----------------------------------------------------------------

    def _encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or not prompt:
            raise InputError("every prompt must be a non-empty string")
        try:
            return self.tokenizer.encode(prompt).ids
        except Exception as e:  # e.g. lone surrogates, which are not valid UTF-8
            raise InputError(f"cannot tokenize the prompt {prompt[:40]!r}: {e}") from None

    def _id_request(self, rows, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, stop_token_ids,
                    truncate: bool) -> _Request:
        if not rows:
            raise InputError("ids must be a non-empty list of token ids, or a list of such lists")
        for row in rows:
            if not row or not all(_is_int(t) and 0 <= t < self.vocab_size for t in row):
                raise InputError(f"every prompt must be a non-empty list of token ids in [0, {self.vocab_size})")
        return self._request(rows, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
                             stop_token_ids, truncate, text=False)

    def _request(self, rows, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed, stop_token_ids,
                 truncate: bool, text: bool) -> _Request:
        d = self.defaults
        pick = lambda value, key, fallback: value if value is not None else d.get(key, fallback)
        params = SamplingParams(temperature=pick(temperature, "temperature", 0.0), top_k=pick(top_k, "top_k", 0),
                                top_p=pick(top_p, "top_p", 1.0),
                                repetition_penalty=pick(repetition_penalty, "repetition_penalty", 1.0))
        new = pick(max_new_tokens, "max_new_tokens", 64)
        if not _is_int(new) or new < 1:
            raise InputError(f"max_new_tokens must be a positive int, not {new!r}")
        if seed is not None and (not _is_int(seed) or seed < 0):
            raise InputError(f"seed must be a non-negative int or None, not {seed!r}")
        if new >= self.max_context:
            raise InputError(f"max_new_tokens {new} leaves no room for a prompt in the {self.max_context}-token context")
        room = self.max_context - new
        for i, row in enumerate(rows):
            if len(row) > room:
                if not truncate:
                    raise InputError(f"prompt of {len(row)} tokens + {new} new tokens exceeds the model's maximum"
                                     f" context of {self.max_context}; shorten it or pass truncate=True")
                rows[i] = row[-room:]  # keep the most recent tokens
        if stop_token_ids is None:
            stop_token_ids = () if self.eos_token_id is None else (self.eos_token_id,)
        if not all(_is_int(t) for t in stop_token_ids):
            raise InputError(f"stop_token_ids must be ints, not {stop_token_ids!r}")
        return _Request(rows, int(new), params, seed, frozenset(int(t) for t in stop_token_ids),
                        self.text_vocab if text else self.vocab_size)

    def _steps(self, req: _Request, done: list[bool]) -> Iterator[list[int | None]]:
        """Yield, per step, each row's new token (None once a row is finished). Callers may set
        done[r] to finish a row early (a stop string)."""
        epoch = self._begin()
        try:
            yield from self._run_steps(req, done, epoch)
        finally:
            self._end(epoch)

    def lend_decoder(self) -> KVDecoder:
        """Hand the decoder to a scheduler that drives it from a thread of its own (SlotGenerator):
        until `take_back_decoder`, this generator's own calls are refused instead of sharing the cache."""
        with self._claim:
            if self._owner is not None:
                raise ReelrtError("this TextGenerator's decoder is in use (a generation in progress, or lent"
                                  " already): load the bundle again for another scheduler")
            self._owner = _LENT
        return self.decoder

    def take_back_decoder(self) -> None:
        with self._claim:
            if self._owner == _LENT:
                self._owner = None

    def _begin(self) -> int:
        """Claim the generator for a new generation of this thread (superseding its own unfinished
        one); refuse while another thread's generation is in progress, rather than share the cache."""
        me = threading.get_ident()
        with self._claim:
            if self._owner == _LENT:
                raise ReelrtError("this TextGenerator's decoder is lent to a SlotGenerator: generate through it,"
                                  " or close it first")
            if self._owner not in (None, me):
                raise ReelrtError("this TextGenerator is busy with a generation of another thread: use one generator"
                                  " per thread (load the bundle again), or finish or close that generation first")
            self._owner = me
            self._epoch += 1
            return self._epoch

    def _end(self, epoch: int) -> None:
        with self._claim:
            if self._epoch == epoch:
                self._owner = None

    def _run_steps(self, req: _Request, done: list[bool], epoch: int) -> Iterator[list[int | None]]:
        rngs = [np.random.default_rng(req.seed) for _ in req.rows]
        seen = [np.asarray(row, np.int64) for row in req.rows]
        self.decoder.start(len(req.rows))
        logits = np.stack([self.decoder.prefill(r, np.asarray(row, np.int64)) for r, row in enumerate(req.rows)])
        for _ in range(req.max_new_tokens):
            if req.vocab_limit < self.vocab_size:
                logits[:, req.vocab_limit:] = -np.inf
            step: list[int | None] = []
            for r in range(len(req.rows)):
                token = None if done[r] else next_token(logits[r], req.params, rngs[r], seen[r])
                if token is not None and token in req.stop_ids:
                    done[r], token = True, None
                if token is not None and req.params.repetition_penalty != 1.0:
                    seen[r] = np.append(seen[r], token)
                step.append(token)
            if all(t is None for t in step):
                return
            yield step
            if self._epoch != epoch:
                raise ReelrtError("this generation was superseded by a newer one on the same TextGenerator")
            if all(done):
                return
            logits = self.decoder.decode(np.array([t if t is not None else 0 for t in step], np.int64))

    def _stream(self, req: _Request, stops: list[str]) -> Iterator[str]:
        text = TextPieces(self.tokenizer, stops)
        done = [False]
        for (token,) in self._steps(req, done):
            if piece := text.push(token):
                yield piece
            if text.stopped:
                done[0] = True
                return
        if piece := text.flush():
            yield piece


class TextPieces:
    """The text of a stream of tokens in pieces, cut before the first stop string; a piece never
    ends in half a UTF-8 character.

    Text that may be the start of a stop string is held back until the next piece settles
    it, and only that held text and the new piece are searched: a stop string cannot begin
    in text already released (a released end that began one would have been held). Each
    token's cost is therefore bounded by the stop strings' length, never the text's.
    """

    def __init__(self, tokenizer, stops: list[str]):
        self.detok = Detokenizer(tokenizer)
        self.stops = stops
        self.held = ""
        self.stopped = False  # a stop string was met: no more text

    def push(self, token: int) -> str:
        """The text that `token` releases ('' while held back)."""
        return self._scan(self.detok.push(token))

    def flush(self) -> str:
        """The text still held at the end of the tokens (up to a stop string, if one completes)."""
        if self.stopped:
            return ""
        piece = self._scan(self.detok.flush())
        return piece if self.stopped else piece + self.held

    def _scan(self, piece: str) -> str:
        text = self.held + piece
        cut = _first_stop(text, self.stops)
        if cut is not None:
            self.held, self.stopped = "", True
            return text[:cut]
        hold = _stop_prefix_length(text, self.stops)
        self.held = text[len(text) - hold:]
        return text[:len(text) - hold]


def _id_rows(ids) -> tuple[bool, list[list] | None]:
    """(is one prompt, the prompts as lists) from a list of ids, a list of lists or a numpy array;
    None where it is neither (the request check turns that into an InputError)."""
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)) or not ids:
        return False, None
    if all(_is_int(t) for t in ids):
        return True, [list(ids)]
    if all(isinstance(r, (list, tuple, np.ndarray)) for r in ids):
        return False, [list(r.tolist() if isinstance(r, np.ndarray) else r) for r in ids]
    return False, None


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_str_list(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(p, str) for p in x)


def check_stops(stop: Sequence[str]) -> list[str]:
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
        raise InputError(f"stop must be a list of non-empty strings, not {stop!r}")
    return list(stop)


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _stop_prefix_length(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that begins some stop string (it must be held back)."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
