"""Text from generated tokens: pieces that never split a UTF-8 character, cut before the
first stop string. TextGenerator, SlotGenerator and the server all turn tokens into text here."""
from __future__ import annotations

from typing import Iterator, Sequence

from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.generation.detokenize import Detokenizer


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
        """The text that `token` releases ('' while held back, and after a stop string)."""
        if self.stopped:
            return ""
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


def text_of(tokens: Iterator[int], text: TextPieces) -> Iterator[str]:
    """The pieces of a token stream, ending at a stop string (the token stream is then closed,
    which cancels its generation)."""
    try:
        for token in tokens:
            if piece := text.push(token):
                yield piece
            if text.stopped:
                return
        if piece := text.flush():
            yield piece
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
