"""Back-pressure: the one bounded line every served request passes, and the error a full one raises.

A generation waits in its scheduler's line for a slot; a classification waits for its turn
on the classifier. Both lines are a `Line` of bounded length, and both say "full" the same
way (QueueFullError: the server's 429 with Retry-After).
"""
from __future__ import annotations

import threading

from reelrt.runtime.errors import ReelrtError


class QueueFullError(ReelrtError):
    """The line is full: try again shortly."""


class Line:
    """A count of requests in line, at most `limit`; `enter` refuses the one over it."""

    def __init__(self, limit: int, what: str):
        self.limit, self.what = limit, what
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.count >= self.limit:
                raise QueueFullError(f"{self.count} {self.what} wait already, the most this server takes")
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1
