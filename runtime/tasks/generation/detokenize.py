"""Incremental detokenisation: text pieces as tokens arrive, never half a UTF-8 character.

A byte-level BPE token may hold part of a multi-byte character; decoding it alone gives
U+FFFD. The detokenizer re-decodes a short window of recent tokens and releases text only
when the window no longer ends in a partial character (the scheme of text-generation-inference).
"""
from __future__ import annotations

from tokenizers import Tokenizer

REPLACEMENT = "\ufffd"


class Detokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the window re-decoded for context
        self.read = 0    # tokens whose text has been released

    def push(self, token: int) -> str:
        """Add one token; return the text it completes ('' while a character is still partial)."""
        self.ids.append(token)
        return self._release(final=False)

    def flush(self) -> str:
        """Whatever is left at the end (a truly incomplete character comes out as U+FFFD)."""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        before = self.tokenizer.decode(self.ids[self.prefix:self.read], skip_special_tokens=False)
        after = self.tokenizer.decode(self.ids[self.prefix:], skip_special_tokens=False)
        if len(after) <= len(before) or (after.endswith(REPLACEMENT) and not final):
            return ""
        self.prefix, self.read = self.read, len(self.ids)
        return after[len(before):]
