"""The scheduler: which request runs in which row, and what each step of the runner does.

Each slot is one row of the runner's cache. A step frees the rows of cancelled requests,
admits waiting requests into free rows (the row whose cached tokens share the longest prefix
with the prompt, or a copy of a busy row's prefix: an NPC persona, or the n choices of one
prompt, is prefilled once), runs every waiting prompt a chunk further, oldest first, while other
rows decode (so they do not stall for whole prompts, and a burst of newcomers all get their
first tokens within a few steps instead of queueing behind one shared chunk: bench/RESULTS.md,
"Serving"), then decodes every decoding row in one call. After each sampled
token it asks the request's constraint for the tokens the grammar forces next and feeds them
with the sampled one as one prefill-like step (jump-forward). Stops (a stop token, a
constraint that is done, max_new_tokens) free the row at once.

The scheduler is driven by one thread at a time: `TextGenerator` steps it inline for its own
request, SlotGenerator (runtime/tasks/generation/slots.py) from a worker thread for the
server. `submit` and `Job.cancel` may be called from any thread.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reelrt.runtime.errors import InputError, ReelrtError
from reelrt.runtime.tasks.backpressure import Line
from reelrt.runtime.tasks.generation.decoder import KVDecoder
from reelrt.runtime.tasks.generation.defaults import MAX_WAITING, PREFILL_CHUNK
from reelrt.runtime.tasks.generation.request import Finish, Pick, Request
from reelrt.runtime.tasks.generation.sampling import Sampler


@dataclass(eq=False)
class Job:
    """One request in the scheduler: its sampler, the tokens its row holds and those still to
    feed, and the callback that receives its events (Picks, then one Finish) on the driving thread."""
    req: Request
    emit: Callable[[Pick | Finish], None]
    sampler: Sampler = field(init=False)
    fed: list[int] = field(default_factory=list)    # tokens whose keys and values are in the row
    todo: list[int] = field(init=False)             # tokens to feed before the next pick
    prompting: bool = True                          # the prompt is not all in yet
    produced: int = 0
    cached: int = 0                                 # prompt tokens reused from a cache
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        constraint = self.req.constraint() if self.req.constraint is not None else None
        self.sampler = Sampler(self.req.params, self.req.seed, self.req.prompt, self.req.vocab_limit, constraint,
                               self.req.logprobs)
        self.todo = list(self.req.prompt)

    def cancel(self) -> None:
        """Stop this request (client gone, stop string met); its row is freed before the next step."""
        self.cancelled = True


class Slot:
    """One row of the runner: the job in it, or the tokens it still holds once free."""

    def __init__(self, row: int):
        self.row = row
        self.job: Job | None = None
        self.cached: list[int] = []     # what the row holds once free, for prompt caching
        self.used = 0.0                 # when it was last freed (least recently used goes first)

    def tokens(self) -> list[int]:
        return self.job.fed if self.job is not None else self.cached


class Scheduler:
    """N slots over one runner, fed from a bounded waiting line."""

    def __init__(self, runner: KVDecoder, slots: int = 1, prefill_chunk: int = PREFILL_CHUNK,
                 max_waiting: int = MAX_WAITING, mask_ahead: bool = False):
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InputError(f"slots must be a positive int, not {slots!r}")
        if isinstance(prefill_chunk, bool) or not isinstance(prefill_chunk, int) or prefill_chunk < 1:
            raise InputError(f"prefill_chunk must be a positive int, not {prefill_chunk!r}")
        self.runner = runner
        self.slots = [Slot(r) for r in range(slots)]
        self.prefill_chunk = prefill_chunk
        self.mask_ahead = mask_ahead    # start a constraint's next mask on a worker thread while the model runs
        self.line = Line(max_waiting, "requests")
        self.waiting: deque[Job] = deque()
        self.lock = threading.Lock()    # guards `waiting`
        self.steps = 0                  # decode steps run
        self.prefills = 0               # prefill runs (prompt chunks, and forced tokens fed with a sampled one)
        self.forced = 0                 # tokens a constraint forced (fed without a decode step of their own)
        self.finished: Counter[str] = Counter()  # requests ended, by Finish reason
        runner.start(slots)

    # ---- from any thread -----------------------------------------------------------------

    def submit(self, req: Request, emit: Callable[[Pick | Finish], None]) -> Job:
        """Queue a request; raises QueueFullError when the line is full."""
        job = Job(req, emit)
        with self.lock:
            self._drop_cancelled()
            self.line.enter()
            self.waiting.append(job)
        return job

    @property
    def active(self) -> int:
        return sum(s.job is not None for s in self.slots)

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or any(s.job is not None for s in self.slots)

    # ---- from the driving thread ---------------------------------------------------------

    def step(self) -> None:
        """Free cancelled rows, admit waiting requests, run prompt chunks, then one decode step."""
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                self._free(slot, "cancelled")
        self._admit()
        chunk = self.prefill_chunk if any(self._decodes(s) for s in self.slots) else None  # else whole prompts
        for slot in sorted((s for s in self.slots if s.job is not None and not self._decodes(s)),
                           key=lambda s: s.job.submitted):
            self._prefill(slot, chunk)
        decoding = [s for s in self.slots if self._decodes(s)]
        if decoding:
            self._decode(decoding)

    def cancel_all(self, reason: str = "cancelled", error: str | None = None) -> None:
        """End every request, waiting or running (the driver is closing, or the runner failed)."""
        with self.lock:
            left, self.waiting = list(self.waiting), deque()
        for job in left:
            self.line.leave()
            self._finish(job, reason, error)
        for slot in self.slots:
            if slot.job is not None:
                self._free(slot, reason, error)

    # ---- planning ------------------------------------------------------------------------

    @staticmethod
    def _decodes(slot: Slot) -> bool:
        return slot.job is not None and not slot.job.prompting and len(slot.job.todo) == 1

    def _drop_cancelled(self) -> None:
        gone = [j for j in self.waiting if j.cancelled]
        if gone:
            self.waiting = deque(j for j in self.waiting if not j.cancelled)
            for job in gone:
                self.line.leave()
                self._finish(job, "cancelled")

    def _admit(self) -> None:
        with self.lock:
            self._drop_cancelled()
            deferred = []
            while self.waiting and any(s.job is None for s in self.slots):
                job = self.waiting.popleft()
                if self._placed(job):
                    self.line.leave()
                else:
                    deferred.append(job)
            self.waiting.extendleft(reversed(deferred))

    def _placed(self, job: Job) -> bool:
        """Put a job in a free row, reusing the longest cached prefix of its prompt there is (at
        least one prompt token is always run, for its logits). A job whose prompt another row is
        still prefilling waits a step, to copy that row rather than prefill the same tokens twice."""
        prompt = list(job.req.prompt)
        free = [s for s in self.slots if s.job is None]
        common = {s.row: self._common(s, prompt) for s in self.slots}
        source = max(self.slots, key=lambda s: (common[s.row], s.job is None, -s.used))
        ahead = [s for s in self.slots if s.job is not None and s.job.prompting
                 and self._shared(s.job.req.prompt, prompt) > common[source.row]]
        if ahead:
            return False
        n = common[source.row]
        if n == 0:
            target = min(free, key=lambda s: s.used)
        elif source.job is None:
            target = source
        else:
            target = min(free, key=lambda s: s.used)
            self.runner.copy_row(source.row, target.row, n)
        target.job, target.cached = job, []
        job.fed, job.todo, job.cached = prompt[:n], prompt[n:], n
        self.runner.truncate(target.row, n)
        self._force(target, [])
        return True

    def _common(self, slot: Slot, prompt: list[int]) -> int:
        held = slot.tokens()[:self.runner.length(slot.row)]
        return self._shared(held, prompt[:-1])

    @staticmethod
    def _shared(a, b) -> int:
        n = min(len(a), len(b))
        differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
        return int(differ[0]) if len(differ) else n

    # ---- running -------------------------------------------------------------------------

    def _prefill(self, slot: Slot, chunk: int | None) -> None:
        """Feed the next chunk of a row's pending tokens (all of them without a chunk); pick the
        next token once they are in."""
        job = slot.job
        n = len(job.todo) if chunk is None else min(len(job.todo), chunk)
        chunk, job.todo = job.todo[:n], job.todo[n:]
        logits = self.runner.prefill(slot.row, np.asarray(chunk, np.int64), start=len(job.fed))
        self.prefills += 1
        job.fed.extend(chunk)
        if not job.todo:
            job.prompting = False
            self._pick(slot, logits)

    def _decode(self, decoding: list[Slot]) -> None:
        rows = np.array([s.row for s in decoding], np.int64)
        tokens = np.array([s.job.todo[0] for s in decoding], np.int64)
        logits = self.runner.decode_rows(rows, tokens)
        self.steps += 1
        for slot in decoding:
            slot.job.fed.append(slot.job.todo.pop())
            self._pick(slot, logits[slot.row])

    def _pick(self, slot: Slot, logits: np.ndarray) -> None:
        """Choose the row's next token, emit it with the tokens its constraint forces after it,
        and free the row when the request is done."""
        job, req = slot.job, slot.job.req
        if job.cancelled:
            return self._free(slot, "cancelled")
        constraint = job.sampler.constraint
        try:  # a request's own failure (its grammar refusing the vocabulary) ends that request only
            if constraint is not None and constraint.is_done():
                return self._free(slot, "stop")
            pick = job.sampler.sample(logits)
            if pick.token in req.stop_ids:
                return self._free(slot, "stop")
            job.sampler.accept(pick.token)
        except ReelrtError as e:
            return self._free(slot, "error", str(e))
        self._force(slot, [pick])

    def _force(self, slot: Slot, picks: list[Pick]) -> None:
        """Emit `picks` (a sampled token, or none before the prompt runs) and the tokens the
        request's constraint forces after them, to be fed with the prompt's rest or as the next
        step; free the row when that completes the request."""
        job, req = slot.job, slot.job.req
        if job.sampler.constraint is None:  # nothing is forced: the common case, kept short
            for p in picks:
                job.produced += 1
                job.emit(p)
            if job.produced >= req.max_new_tokens:
                return self._free(slot, "length")
            if picks:
                job.todo = [picks[-1].token]
            return None
        try:
            forced = job.sampler.forced(req.max_new_tokens - job.produced - len(picks))
        except ReelrtError as e:
            return self._free(slot, "error", str(e))
        picks = picks + [Pick(token, 0.0 if req.logprobs is not None else None) for token in forced]
        for p in picks:
            job.produced += 1
            job.emit(p)
        self.forced += len(forced)
        if job.produced >= req.max_new_tokens:
            return self._free(slot, "length")
        constraint = job.sampler.constraint
        if constraint is not None and constraint.is_done():
            return self._free(slot, "stop")
        job.todo = job.todo + [p.token for p in picks] if job.prompting else [p.token for p in picks]
        if self.mask_ahead:
            try:
                job.sampler.prepare()
            except ReelrtError as e:
                self._free(slot, "error", str(e))

    def _free(self, slot: Slot, reason: str, error: str | None = None) -> None:
        job = slot.job
        slot.job = None
        slot.cached = job.fed[:self.runner.length(slot.row)]
        slot.used = time.perf_counter()
        self._finish(job, reason, error)

    def _finish(self, job: Job, reason: str, error: str | None = None) -> None:
        self.finished[reason] += 1
        job.emit(Finish(reason, len(job.req.prompt), job.produced, job.cached, error))
