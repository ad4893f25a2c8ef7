"""Incremental detokenisation: text pieces as tokens arrive, never half a UTF-8 character.

A byte-level BPE token may hold part of a multi-byte character; decoding it alone gives
U+FFFD. `tokenizers.decoders.DecodeStream` re-decodes a short window of recent tokens and
releases text only once the window no longer ends in a partial character, so each token
costs the same however long the text grows. At the end of a generation, `flush` releases
what is still held back (a truly incomplete character comes out as U+FFFD, as a whole
decode would give it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the `text` extra; a Detokenizer is only made for a tokenizer that was read
    from tokenizers import Tokenizer


class Detokenizer:
    def __init__(self, tokenizer: Tokenizer):
        from tokenizers.decoders import DecodeStream
        self.tokenizer = tokenizer
        self.stream = DecodeStream(skip_special_tokens=False)
        self.released: list[int] = []  # the tokens of the last released piece: context for flush
        self.held: list[int] = []      # tokens pushed since, whose text is not out yet

    def push(self, token: int) -> str:
        """Add one token; return the text it completes ('' while a character is still partial)."""
        piece = self.stream.step(self.tokenizer, token)
        if piece is None:
            self.held.append(token)
            return ""
        self.released, self.held = self.held + [token], []
        return piece

    def flush(self) -> str:
        """Whatever is left at the end; the stream is done after this."""
        if not self.held:
            return ""
        before = self.tokenizer.decode(self.released, skip_special_tokens=False)
        after = self.tokenizer.decode(self.released + self.held, skip_special_tokens=False)
        self.held = []
        return after[len(before):]
