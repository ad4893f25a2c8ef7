"""Continuous batching: a worker thread steps the scheduler, so many generations from many
threads share one decoder through N slots.

    gen = reelrt.runtime.load("bundles/gpt2-int4")
    slots = SlotGenerator(gen, slots=8)
    for piece in slots.stream("The innkeeper says", max_new_tokens=40):   # from any thread
        print(piece, end="")
    slots.close()

What a step does (admission, prefill chunks, the prefix cache, stops, cancellation) is the
scheduler's (runtime/tasks/generation/scheduler.py); this module owns the thread that drives
it, and the blocking and streaming faces that callers of other threads use.

A request's answer does not depend on its neighbours: each has its own sampler state (seed,
repetition history), and the decoder computes each row from that row's cache alone, so greedy
output alone and in a full batch is the same, and the same as TextGenerator's.
"""
from __future__ import annotations

import queue
import threading
from collections import Counter
from typing import Any, Callable, Iterator, Sequence

from reelrt.runtime.errors import ReelrtError
from reelrt.runtime.tasks.generation.generator import TextGenerator
from reelrt.runtime.tasks.generation.pieces import TextPieces, check_stops, text_of
from reelrt.runtime.tasks.generation.request import Finish, Pick, Request
from reelrt.runtime.tasks.generation.defaults import MAX_WAITING, PREFILL_CHUNK
from reelrt.runtime.tasks.generation.scheduler import Job, Scheduler


class SlotGenerator:
    """N slots over one TextGenerator's decoder, fed from a bounded waiting line."""

    def __init__(self, generator: TextGenerator, slots: int = 4, max_waiting: int = MAX_WAITING,
                 prefill_chunk: int = PREFILL_CHUNK):
        self.gen = generator
        runner = generator.lend_decoder()   # ours until close(); the generator refuses its own calls
        try:
            self.scheduler = Scheduler(runner, slots, prefill_chunk, max_waiting, generator.mask_ahead)
        except BaseException:
            generator.take_back_decoder()
            raise
        self._wake = threading.Condition()
        self._closed = False
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="reelrt-slots", daemon=True)
        self._thread.start()

    # ---- submitting ----------------------------------------------------------------------

    def request(self, ids: Sequence[int], max_new_tokens: int | None = None, **params: Any) -> Request:
        """A checked request for prompt ids (TextGenerator.request)."""
        return self.gen.request(ids, max_new_tokens, **params)

    def submit(self, req: Request, emit: Callable[[Pick | Finish], None]) -> Job:
        """Queue a request; `emit` gets its Picks and then one Finish, on the worker thread
        (keep it short: hand the events to your own queue). Raises QueueFullError when the
        waiting line is full."""
        with self._wake:
            if self._closed:
                raise ReelrtError("this SlotGenerator is closed")
            if self._failed is not None:
                raise ReelrtError(f"the decoder failed: {self._failed}")
            job = self.scheduler.submit(req, emit)
            self._wake.notify()
        return job

    def stream_ids(self, ids: Sequence[int], max_new_tokens: int | None = None, **params: Any) -> Iterator[int]:
        """Yield new token ids as TextGenerator.stream_ids would, sharing the decoder with other threads."""
        return self._tokens(self.request(ids, max_new_tokens, text=False, **params))

    def stream(self, prompt: str, max_new_tokens: int | None = None, *, stop: Sequence[str] = (),
               **params: Any) -> Iterator[str]:
        """Yield text pieces as TextGenerator.stream would, sharing the decoder with other threads."""
        stops = check_stops(stop)
        req = self.request(self.gen.encode(prompt), max_new_tokens, **params)
        return text_of(self._tokens(req), TextPieces(self.gen.tokenizer, stops))

    def generate(self, prompt: str, max_new_tokens: int | None = None, **params: Any) -> str:
        return "".join(self.stream(prompt, max_new_tokens, **params))

    def _tokens(self, req: Request) -> Iterator[int]:
        events: queue.SimpleQueue = queue.SimpleQueue()
        job = self.submit(req, events.put)
        try:
            while not isinstance(event := events.get(), Finish):
                yield event.token
            if event.reason == "error":
                raise ReelrtError(f"generation failed: {event.error}")
        finally:
            job.cancel()

    # ---- state ---------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return self.scheduler.line.count

    @property
    def active(self) -> int:
        return self.scheduler.active

    @property
    def steps(self) -> int:
        return self.scheduler.steps

    @property
    def finished(self) -> Counter[str]:
        return self.scheduler.finished

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
                    while not self._closed and not self.scheduler.busy:
                        self._wake.wait()
                    if self._closed:
                        break
                self.scheduler.step()
        except BaseException as e:  # a decoder failure ends every request with an error, never hangs one
            self._failed = e
            self.scheduler.cancel_all("error", f"{type(e).__name__}: {e}")
            raise
        finally:
            with self._wake:
                self._closed = True
            self.scheduler.cancel_all()
