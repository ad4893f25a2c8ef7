"""Continuous batching: many generations share one decoder through N slots.

    gen = reelrt.runtime.load("bundles/gpt2-int4")
    slots = SlotGenerator(gen, slots=8)
    for piece in slots.stream("The innkeeper says", max_new_tokens=40):   # from any thread
        print(piece, end="")
    slots.close()

Each slot is one row of the decoder's cache. A worker thread owns the decoder: between steps it
prefills newly arrived requests into free rows (a chunk at a time while others are decoding, so
they do not stall for a whole prompt), then decodes every active row in one call, each at its
own length; a request that finishes or is cancelled frees its row at once. A row keeps the
tokens it last held, so a request whose prompt starts the same way (an NPC persona) prefills
only the rest of it.

A request's answer does not depend on its neighbours: each has its own sampler state (seed,
repetition history), and the decoder computes each row from that row's cache alone, so greedy
output alone and in a full batch is the same, and the same as TextGenerator's.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from reelrt.runtime.errors import InputError, ReelrtError
from reelrt.runtime.tasks.generation.generator import TextGenerator, TextPieces, _Request, check_stops
from reelrt.runtime.tasks.generation.sampling import next_token


PREFILL_CHUNK = 16  # prompt tokens run per step while others decode (bench/RESULTS.md, "Serving": the trade)


class QueueFullError(ReelrtError):
    """Every slot is busy and the waiting line is full: try again shortly."""


@dataclass(frozen=True)
class Finish:
    """The last event of a request: why it ended ("stop", "length", "cancelled", "error")."""
    reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    error: str | None = None



@dataclass(eq=False)
class Job:
    """One request: its prompt, sampling state and the callback that receives its events
    (token ids, then one Finish) on the worker thread."""
    ids: list[int]
    req: _Request
    emit: Callable[[int | Finish], None]
    rng: np.random.Generator = field(init=False)
    seen: np.ndarray = field(init=False)
    fed: list[int] = field(init=False)      # tokens whose keys and values are (or will be) in the row
    produced: int = 0
    cached: int = 0                         # prompt tokens reused from the row's previous request
    next: int | None = None                 # the sampled token still to be fed to the decoder
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.req.seed)
        self.seen = np.asarray(self.ids, np.int64)
        self.fed = list(self.ids)

    def cancel(self) -> None:
        """Stop this request (client gone, stop string met); its slot is freed before the next step."""
        self.cancelled = True


class _Slot:
    def __init__(self, row: int):
        self.row = row
        self.job: Job | None = None
        self.cursor = 0                 # prompt tokens in the cache so far while prefilling
        self.cached: list[int] = []     # what the row holds once free, for prompt caching
        self.used = 0.0                 # when it was last freed (least recently used goes first)


class SlotGenerator:
    """N slots over one TextGenerator's decoder, fed from a bounded waiting line."""

    def __init__(self, generator: TextGenerator, slots: int = 4, max_waiting: int = 64,
                 prefill_chunk: int = PREFILL_CHUNK):
        if not isinstance(slots, int) or slots < 1:
            raise InputError(f"slots must be a positive int, not {slots!r}")
        if not isinstance(prefill_chunk, int) or prefill_chunk < 1:
            raise InputError(f"prefill_chunk must be a positive int, not {prefill_chunk!r}")
        self.gen = generator
        self.slots = [_Slot(r) for r in range(slots)]
        self.max_waiting = max_waiting
        self.prefill_chunk = prefill_chunk
        self._waiting: deque[Job] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self.steps = 0                  # decode steps run (for metrics)
        self.finished: Counter[str] = Counter()  # requests ended, by Finish reason
        self._failed: BaseException | None = None
        self.decoder = generator.lend_decoder()   # ours until close(); the generator refuses its own calls
        self.decoder.start(slots)
        self._thread = threading.Thread(target=self._work, name="reelrt-slots", daemon=True)
        self._thread.start()

    # ---- submitting ----------------------------------------------------------------------

    def request(self, ids: Sequence[int], max_new_tokens: int | None = None, *, temperature: float | None = None,
                top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
                seed: int | None = None, stop_token_ids: Sequence[int] | None = None, truncate: bool = False,
                text: bool = True) -> _Request:
        """A checked request for prompt ids, with TextGenerator's defaults, limits and errors.
        text=True never samples ids the tokenizer cannot spell."""
        ids = list(ids.tolist() if isinstance(ids, np.ndarray) else ids)
        if text:
            for t in ids:
                if not isinstance(t, (int, np.integer)) or isinstance(t, bool) or not 0 <= t < self.gen.vocab_size:
                    raise InputError(f"every prompt must be a non-empty list of token ids in [0, {self.gen.vocab_size})")
            if not ids:
                raise InputError("a prompt must hold at least one token")
            return self.gen._request([ids], max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
                                     stop_token_ids, truncate, text=True)
        return self.gen._id_request([ids], max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
                                    stop_token_ids, truncate)

    def submit(self, req: _Request, emit: Callable[[int | Finish], None]) -> Job:
        """Queue a request; `emit` gets its token ids and then one Finish, on the worker thread
        (keep it short: hand the events to your own queue). Raises QueueFullError when the
        waiting line is full."""
        job = Job(list(req.rows[0]), req, emit)
        with self._wake:
            if self._closed:
                raise ReelrtError("this SlotGenerator is closed")
            if self._failed is not None:
                raise ReelrtError(f"the decoder failed: {self._failed}")
            if len(self._waiting) >= self.max_waiting:  # requests cancelled while waiting leave the line first
                gone = [j for j in self._waiting if j.cancelled]
                self._waiting = deque(j for j in self._waiting if not j.cancelled)
                for j in gone:
                    j.emit(Finish("cancelled", len(j.ids), 0))
            if len(self._waiting) >= self.max_waiting:
                raise QueueFullError(f"all {len(self.slots)} slots are busy and {len(self._waiting)} requests wait")
            self._waiting.append(job)
            self._wake.notify()
        return job

    def stream_ids(self, ids: Sequence[int], max_new_tokens: int | None = None, **params) -> Iterator[int]:
        """Yield new token ids as TextGenerator.stream_ids would, sharing the decoder with other threads."""
        return self._events(self.request(ids, max_new_tokens, text=False, **params))

    def stream(self, prompt: str, max_new_tokens: int | None = None, *, stop: Sequence[str] = (),
               **params) -> Iterator[str]:
        """Yield text pieces as TextGenerator.stream would, sharing the decoder with other threads."""
        stops = check_stops(stop)
        req = self.request(self.gen._encode(prompt), max_new_tokens, **params)
        return self._pieces(req, stops)

    def generate(self, prompt: str, max_new_tokens: int | None = None, **params) -> str:
        return "".join(self.stream(prompt, max_new_tokens, **params))

    def _pieces(self, req: _Request, stops: list[str]) -> Iterator[str]:
        text = TextPieces(self.gen.tokenizer, stops)
        tokens = self._events(req)
        try:
            for token in tokens:
                if piece := text.push(token):
                    yield piece
                if text.stopped:
                    return
            if piece := text.flush():
                yield piece
        finally:
            tokens.close()

    def _events(self, req: _Request) -> Iterator[int]:
        events: queue.SimpleQueue = queue.SimpleQueue()
        job = self.submit(req, events.put)
        try:
            while not isinstance(event := events.get(), Finish):
                yield event
            if event.reason == "error":
                raise ReelrtError(f"generation failed: {event.error}")
        finally:
            job.cancel()

    # ---- state ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        return sum(s.job is not None for s in self.slots)

    def close(self) -> None:
        """Finish the worker: requests still waiting or running end with Finish("cancelled")."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self.gen.take_back_decoder()

    def __enter__(self) -> SlotGenerator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the worker ----------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                with self._wake:
                    while not self._closed and not self._waiting and not any(s.job for s in self.slots):
                        self._wake.wait()
                    if self._closed:
                        break
                self._step()
        except BaseException as e:  # a decoder failure ends every request with an error, never hangs one
            self._failed = e
            for slot in self.slots:
                if slot.job is not None:
                    self._free(slot, "error", error=f"{type(e).__name__}: {e}")
            raise
        finally:
            with self._wake:
                self._closed = True
                left, self._waiting = list(self._waiting), deque()
            for job in left:
                job.emit(Finish("cancelled", len(job.ids), 0))
            for slot in self.slots:
                if slot.job is not None:
                    self._free(slot, "cancelled")

    def _step(self) -> None:
        """Free cancelled slots, admit waiting requests, prefill, then one decode step."""
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                self._free(slot, "cancelled")
        self._admit()
        decoding = [s for s in self.slots if s.job is not None and s.job.next is not None]
        budget = self.prefill_chunk if decoding else None  # nobody waits on a decode: prefill whole prompts
        for slot in self.slots:
            if slot.job is not None and slot.job.next is None and (budget is None or budget > 0):
                budget = self._prefill(slot, budget)
        decoding = [s for s in self.slots if s.job is not None and s.job.next is not None]
        if decoding:
            self._decode(decoding)

    def _admit(self) -> None:
        while True:
            free = [s for s in self.slots if s.job is None]
            with self._wake:
                if not free or not self._waiting:
                    return
                job = self._waiting.popleft()
            if job.cancelled:
                job.emit(Finish("cancelled", len(job.ids), 0))
                continue
            slot, common = self._best_slot(free, job.ids)
            slot.job, slot.cursor, job.cached = job, common, common
            slot.cached = []

    def _best_slot(self, free: list[_Slot], ids: list[int]) -> tuple[_Slot, int]:
        """The free slot whose cached tokens share the longest prefix with `ids` (at least one
        prompt token is always run, for its logits), else the least recently used."""
        def common(slot: _Slot) -> int:
            n = min(len(slot.cached), len(ids) - 1)
            same = np.flatnonzero(np.asarray(slot.cached[:n]) != np.asarray(ids[:n]))
            return int(same[0]) if len(same) else n
        best = max(free, key=lambda s: (common(s), -s.used))
        n = common(best)
        if n == 0:
            best = min(free, key=lambda s: s.used)
        return best, n

    def _prefill(self, slot: _Slot, budget: int | None) -> int | None:
        """Run the next part of a slot's prompt (all of it without a budget); sample its first
        token once the prompt is in. Returns the budget left."""
        job = slot.job
        end = len(job.ids) if budget is None else min(len(job.ids), slot.cursor + budget)
        logits = self.decoder.prefill(slot.row, np.asarray(job.ids[slot.cursor:end], np.int64), start=slot.cursor)
        used, slot.cursor = end - slot.cursor, end
        if end == len(job.ids):
            self._sample(slot, logits)
        return None if budget is None else budget - used

    def _decode(self, decoding: list[_Slot]) -> None:
        d = self.decoder
        rows = max(s.row for s in decoding) + 1
        tokens = np.zeros(rows, np.int64)
        parked = {}  # rows in the span that are idle or prefilling: their length is put back after the step
        for slot in self.slots[:rows]:
            if slot in decoding:
                tokens[slot.row] = slot.job.next
            else:
                parked[slot.row] = n = int(d.lengths[slot.row])
                if n >= d.max_context:  # its dummy token would land on the last cached position
                    parked[slot.row] = d.lengths[slot.row] = n - 1
                    slot.cached = slot.cached[:n - 1]
        d.active = rows
        logits = d.decode(tokens)
        for row, n in parked.items():
            d.lengths[row] = n
        self.steps += 1
        for slot in decoding:
            slot.job.fed.append(slot.job.next)
            self._sample(slot, logits[slot.row])

    def _sample(self, slot: _Slot, logits: np.ndarray) -> None:
        """Pick the slot's next token as TextGenerator does, emit it, and free the slot when done."""
        job, req = slot.job, slot.job.req
        if job.cancelled:
            return self._free(slot, "cancelled")
        if req.vocab_limit < len(logits):
            logits[req.vocab_limit:] = -np.inf
        token = next_token(logits, req.params, job.rng, job.seen)
        if token in req.stop_ids:
            return self._free(slot, "stop")
        if req.params.repetition_penalty != 1.0:
            job.seen = np.append(job.seen, token)
        job.produced += 1
        job.emit(token)
        if job.produced >= req.max_new_tokens:
            return self._free(slot, "length")
        job.next = token

    def _free(self, slot: _Slot, reason: str, error: str | None = None) -> None:
        job = slot.job
        slot.job = None
        slot.cached = job.fed[:int(self.decoder.lengths[slot.row])]
        slot.used = time.perf_counter()
        self.finished[reason] += 1
        job.emit(Finish(reason, len(job.ids), job.produced, job.cached, error))
