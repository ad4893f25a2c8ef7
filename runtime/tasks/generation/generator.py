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

import os
import threading
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from reelrt.runtime.backends import BackendFallbackWarning, OrtBackend, open_backend, open_onnxruntime
from reelrt.runtime.backends.session import ThreadPolicy
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import BackendUnavailableError, BundleError, InputError, ReelrtError
from reelrt.runtime.tasks.generation.config import DecoderConfig, generation_defaults
from reelrt.runtime.tasks.generation.decoder import KVDecoder
from reelrt.runtime.tasks.generation.pieces import TextPieces, check_stops, text_of
from reelrt.runtime.tasks.generation.request import Finish, Pick, Request, build_request, is_int
from reelrt.runtime.tasks.generation.sampling import Constraint
from reelrt.runtime.tasks.generation.scheduler import Scheduler
from reelrt.runtime.tasks.model import Model
from reelrt.runtime.tasks.tokenizer import read_tokenizer

if TYPE_CHECKING:  # the grammar extra
    from reelrt.runtime.tasks.generation.grammar import ConstraintSpec

_LENT = -1  # TextGenerator._owner while a scheduler of another thread drives the decoder (lend_decoder)


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
        self.config = DecoderConfig.from_manifest(m)
        eos = m.tokenizer.get("eos_token_id", self.config.eos_token_id)
        if eos != self.config.eos_token_id:
            raise BundleError(f"not a usable GPT-2 bundle: tokenizer.eos_token_id {eos!r} differs from"
                              f" extra.eos_token_id {self.config.eos_token_id!r}")
        try:
            self.tokenizer = read_tokenizer(bundle)
        except ReelrtError:  # a bad bundle, or the text extra missing: already says what to do
            raise
        except Exception as e:  # a tokenizer file tokenizers cannot read
            raise BundleError(f"not a usable GPT-2 bundle: {type(e).__name__}: {e}") from None
        self.max_context, self.vocab_size = self.config.max_context, self.config.vocab_size
        self.eos_token_id = self.config.eos_token_id
        self.text_vocab = min(self.tokenizer.get_vocab_size(), self.vocab_size)
        self._init_worker(threads)
        backend = open_backend(bundle, device="cpu", threads=self.threads)  # what `reelrt compile` chose
        if not isinstance(backend, OrtBackend):
            warnings.warn(f"text generation binds its cache as ONNX Runtime buffers, which {backend.name} cannot"
                          " use; running ONNX Runtime on the bundle's model", BackendFallbackWarning, stacklevel=3)
            backend = open_onnxruntime(bundle, m.model, "cpu", self.threads, {})
        self._attach(backend)
        self.decoder = KVDecoder.from_config(backend.session, self.config)
        self.defaults = generation_defaults(m)
        self._epoch = 0
        self._owner: int | None = None  # the thread whose generation is in progress, or _LENT
        self._claim = threading.Lock()   # guards _owner and _epoch

    # ---- public entry points -------------------------------------------------------------

    def generate(self, prompt: str | Sequence[str], max_new_tokens: int | None = None, *,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 repetition_penalty: float | None = None, stop: Sequence[str] = (), seed: int | None = None,
                 truncate: bool = False, json_schema: dict | str | None = None,
                 grammar: str | None = None) -> str | list[str]:
        """The continuation of a prompt (or of each prompt of a list), cut before the first stop string.
        json_schema (a schema as a dict or JSON text) or grammar (Lark or GBNF text) constrains it:
        the answer is a document of that schema or grammar (whole unless max_new_tokens runs out)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt) if _is_str_list(prompt) else None
        if not prompts:
            raise InputError("prompt must be a non-empty string or a non-empty list of strings")
        stops = check_stops(stop)
        constraint = self.constraint(constraint_spec(json_schema, grammar))
        reqs = [self.request(self.encode(p), max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             repetition_penalty=repetition_penalty, seed=seed, truncate=truncate,
                             constraint=constraint) for p in prompts]
        texts = [TextPieces(self.tokenizer, stops) for _ in prompts]
        pieces: list[list[str]] = [[] for _ in prompts]
        for jobs, events in self._generation(reqs):
            for i, event in events:
                if isinstance(event, Pick):
                    pieces[i].append(texts[i].push(event.token))
                    if texts[i].stopped:
                        jobs[i].cancel()
        out = ["".join(p) + t.flush() for p, t in zip(pieces, texts)]
        return out[0] if isinstance(prompt, str) else out

    def stream(self, prompt: str, max_new_tokens: int | None = None, *, temperature: float | None = None,
               top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
               stop: Sequence[str] = (), seed: int | None = None, truncate: bool = False,
               json_schema: dict | str | None = None, grammar: str | None = None) -> Iterator[str]:
        """Yield the continuation in pieces as tokens arrive; the pieces join to what `generate` returns."""
        if not isinstance(prompt, str) or not prompt:
            raise InputError("prompt must be a non-empty string")
        stops = check_stops(stop)
        req = self.request(self.encode(prompt), max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           repetition_penalty=repetition_penalty, seed=seed, truncate=truncate,
                           constraint=self.constraint(constraint_spec(json_schema, grammar)))
        return text_of(self._tokens(req), TextPieces(self.tokenizer, stops))

    def generate_ids(self, ids: Sequence[int] | Sequence[Sequence[int]], max_new_tokens: int | None = None, *,
                     temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                     repetition_penalty: float | None = None, seed: int | None = None,
                     stop_token_ids: Sequence[int] | None = None, truncate: bool = False) -> list[int] | list[list[int]]:
        """Token ids in, new token ids out (the stop token excluded), for engines with their own tokenizer.
        stop_token_ids defaults to the end-of-text token; pass () to always run max_new_tokens."""
        single, rows = _id_rows(ids)
        if not rows:
            raise InputError("ids must be a non-empty list of token ids, or a list of such lists")
        reqs = [self.request(row, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             repetition_penalty=repetition_penalty, seed=seed, stop_token_ids=stop_token_ids,
                             truncate=truncate, text=False) for row in rows]
        generated: list[list[int]] = [[] for _ in reqs]
        for _, events in self._generation(reqs):
            for i, event in events:
                if isinstance(event, Pick):
                    generated[i].append(event.token)
        return generated[0] if single else generated

    def stream_ids(self, ids: Sequence[int], max_new_tokens: int | None = None, *, temperature: float | None = None,
                   top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
                   seed: int | None = None, stop_token_ids: Sequence[int] | None = None,
                   truncate: bool = False) -> Iterator[int]:
        """Yield new token ids one by one as `generate_ids` would return them (one prompt)."""
        single, rows = _id_rows(ids)
        if not single:
            raise InputError("ids must be a non-empty list of token ids")
        return self._tokens(self.request(rows[0], max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                         repetition_penalty=repetition_penalty, seed=seed,
                                         stop_token_ids=stop_token_ids, truncate=truncate, text=False))

    # ---- requests ------------------------------------------------------------------------

    def encode(self, prompt: str) -> list[int]:
        """The prompt's token ids; InputError for an empty or unencodable prompt."""
        if not isinstance(prompt, str) or not prompt:
            raise InputError("every prompt must be a non-empty string")
        try:
            return self.tokenizer.encode(prompt).ids
        except Exception as e:  # e.g. lone surrogates, which are not valid UTF-8
            raise InputError(f"cannot tokenize the prompt {prompt[:40]!r}: {e}") from None

    def request(self, ids: Sequence[int], max_new_tokens: int | None = None, *, text: bool = True,
                constraint: Callable[[], Constraint] | None = None, **params: Any) -> Request:
        """A checked Request for prompt ids, with this bundle's defaults and limits (the public
        way in for a scheduler's clients). text=True never samples ids the tokenizer cannot spell."""
        return build_request(self.config, self.defaults, ids, max_new_tokens=max_new_tokens,
                             vocab_limit=self.text_vocab if text else self.vocab_size, constraint=constraint, **params)

    def constraint(self, spec: ConstraintSpec | None) -> Callable[[], Constraint] | None:
        """What makes each request's constraint for `spec` (compiled once per spec and tokenizer),
        for TextGenerator.request(constraint=...); None for no spec."""
        if spec is None:
            return None
        from reelrt.runtime.tasks.generation.grammar import Grammar
        return Grammar.compile(spec, self.tokenizer, self.vocab_size, self.eos_token_id).constraint

    @property
    def mask_ahead(self) -> bool:
        """Whether a constraint's next mask is computed on a worker thread while the model runs:
        where the model's threads leave a core free (on a machine whose cores they all take, the
        worker competes with the step and costs more than it saves: bench/RESULTS.md)."""
        return self.threads.threads < (os.cpu_count() or 1)

    # ---- the decoder: one driver at a time -----------------------------------------------

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

    def _generation(self, reqs: list[Request]) -> Iterator[tuple[list, list[tuple[int, Pick | Finish]]]]:
        """Step a scheduler of one row per request on this thread; yield (the jobs, the events of
        each step as (request index, event)) until every request finished."""
        epoch = self._begin()
        try:
            scheduler = Scheduler(self.decoder, slots=len(reqs), max_waiting=len(reqs), mask_ahead=self.mask_ahead)
            events: list[tuple[int, Pick | Finish]] = []
            jobs = [scheduler.submit(req, lambda e, i=i: events.append((i, e))) for i, req in enumerate(reqs)]
            while scheduler.busy:
                scheduler.step()
                step, events[:] = list(events), []
                yield jobs, step
                if self._epoch != epoch:
                    raise ReelrtError("this generation was superseded by a newer one on the same TextGenerator")
        finally:
            self._end(epoch)

    def _tokens(self, req: Request) -> Iterator[int]:
        for _, events in self._generation([req]):
            for _, event in events:
                if isinstance(event, Pick):
                    yield event.token


def constraint_spec(json_schema: dict | str | None = None, grammar: str | None = None) -> ConstraintSpec | None:
    """The spec of generate's json_schema= or grammar= (at most one)."""
    if json_schema is not None and grammar is not None:
        raise InputError("pass json_schema or grammar, not both")
    if json_schema is not None:
        from reelrt.runtime.tasks.generation.grammar import ConstraintSpec
        return ConstraintSpec.from_schema(json_schema)
    if grammar is not None:
        from reelrt.runtime.tasks.generation.grammar import ConstraintSpec
        return ConstraintSpec("grammar", grammar)
    return None


def _id_rows(ids) -> tuple[bool, list[list] | None]:
    """(is one prompt, the prompts as lists) from a list of ids, a list of lists or a numpy array;
    None where it is neither (the request check turns that into an InputError)."""
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if not isinstance(ids, (list, tuple)) or not ids:
        return False, None
    if all(is_int(t) for t in ids):
        return True, [list(ids)]
    if all(isinstance(r, (list, tuple, np.ndarray)) for r in ids):
        return False, [list(r.tolist() if isinstance(r, np.ndarray) else r) for r in ids]
    return False, None


def _is_str_list(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(p, str) for p in x)
