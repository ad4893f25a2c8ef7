"""Structured output: a JSON schema, "any JSON object" or a grammar constrains each next token.

A game asks an NPC for `{"mood": "angry", "line": "..."}` and must never get half an object.
The constraint is llguidance's (the `grammar` extra, `pip install 'reelrt[grammar]'`: one
Rust wheel, no torch; what onnxruntime-genai uses): an Earley parser over the tokenizer's
token trie that gives, before each step, the set of tokens that keep the text a prefix of the
language. The public names:

    ConstraintSpec(kind, text)          kind "json_object" | "json_schema" | "grammar"; text the
                                        schema as JSON, or a Lark (llguidance) or GBNF grammar;
                                        checked on construction (InputError says what is wrong)
    ConstraintSpec.from_schema(schema)  a json_schema spec from a dict or JSON text
    spec_from_response_format(obj)      OpenAI's `response_format` -> ConstraintSpec | None ("text")
    Grammar.compile(spec, tokenizer, vocab_size, eos_token_id)
                                        compiled once per (tokenizer, spec) and cached; the
                                        tokenizer's token table is built once per tokenizer.json
    grammar.constraint() -> Constraint  one request's state:
        allowed() -> bool[vocab_size]   a new mask of the tokens the grammar admits next (ids
                                        the tokenizer lacks, and EOS until the text is
                                        complete, are False)
        start_mask()                    compute that mask on a worker thread (llguidance drops
                                        the GIL) while the decode step runs; allowed() waits
        accept(token_id)                the sampled token, EOS included (InputError if the
                                        grammar refuses it; the state is then unchanged)
        forced(limit=None) -> list[int] the tokens the grammar admits as the only continuation
                                        (keys, punctuation, enum tails), ALREADY ACCEPTED: feed
                                        them to the model in one prefill-like step
        is_done() -> bool               nothing but EOS can follow: end the request

A loop's order (forced tokens before the prompt's prefill too; the mask goes before top-k and
top-p, so that they choose among the tokens the grammar allows):

    ids = c.forced(); logits = prefill(prompt + ids)
    while not c.is_done():
        token = sample(np.where(c.allowed(), logits, -np.inf)); c.accept(token)
        if token == eos: break
        run = [token] + c.forced(limit=room_left); ids += run
        if c.is_done(): break
        c.start_mask()                  # optional: overlaps the mask with the step
        logits = step(run)              # one decode step, or one prefill-like step for a run

The text the grammar sees is the text a client sees, `tokenizer.decode(generated_ids)`:
- byte-level BPE (GPT-2) and byte-fallback tokenizers are read by llguidance itself from
  tokenizer.json;
- any other tokenizers model (WordLevel, WordPiece, Unigram ...) gets a token table made
  through its own decoder: each token's text after a context token. A token whose text is not
  the same alone as after other tokens (a decoder that strips the first space) is kept out of
  the first step only; a token whose text depends on what follows is never produced under a
  constraint; a decoder that puts a separator between all tokens (no decoder: "a b") cannot
  spell text that must have none, and is refused with InputError.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from reelrt.runtime.errors import BackendUnavailableError, InputError, ReelrtError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

KINDS = ("json_object", "json_schema", "grammar")
MAX_SPEC_CHARS = 200_000
# JSON as OpenAI's structured outputs write it: no whitespace between tokens, so a model cannot
# pad forever and every key and separator after a value is forced. A schema's "x-guidance" wins.
JSON_DEFAULTS = {"whitespace_flexible": False}
EXTRA = "pip install 'reelrt[grammar]'"


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise BackendUnavailableError(f"structured output needs the llguidance package: {EXTRA}") from None
    return llguidance


@dataclass(frozen=True)
class ConstraintSpec:
    """What the output must be. `text`: the JSON schema (json_schema), the grammar (grammar, Lark
    as llguidance reads it or llama.cpp's GBNF), nothing (json_object: any JSON object)."""
    kind: str
    text: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"constraint kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not isinstance(self.text, str):
            raise InputError(f"a {self.kind} constraint's text must be a string, not {type(self.text).__name__}")
        if len(self.text) > MAX_SPEC_CHARS:
            raise InputError(f"a {self.kind} constraint's text has {len(self.text)} characters, over {MAX_SPEC_CHARS}")
        if self.kind == "json_object" and self.text:
            raise InputError("a json_object constraint takes no text (any JSON object); use json_schema for a schema")
        if self.kind == "json_schema":
            try:
                schema = json.loads(self.text)
            except ValueError as e:
                raise InputError(f"the JSON schema is not JSON: {e}") from None
            if not isinstance(schema, dict):
                raise InputError(f"a JSON schema must be a JSON object, not {type(schema).__name__}")
        if self.kind == "grammar" and not self.text.strip():
            raise InputError("a grammar constraint needs the grammar's text (Lark or GBNF)")
        error = _llguidance().LLMatcher.validate_grammar(self.grammar_text())
        if error:
            raise InputError(f"bad {self.kind.replace('_', ' ')}: {error.splitlines()[0]}")

    @classmethod
    def from_schema(cls, schema: dict | str) -> ConstraintSpec:
        """A json_schema spec from a schema as a dict or as JSON text (generate(json_schema=...))."""
        if isinstance(schema, dict):
            return cls("json_schema", json.dumps(schema))
        if isinstance(schema, str):
            return cls("json_schema", schema)
        raise InputError(f"a JSON schema must be a dict or its JSON text, not {type(schema).__name__}")

    def grammar_text(self) -> str:
        """The spec in llguidance's grammar form."""
        llg = _llguidance()
        if self.kind == "grammar":
            try:
                return llg.grammar_from("grammar", self.text)
            except ValueError as e:  # GBNF that does not convert
                raise InputError(f"bad grammar: {e}") from None
        schema = json.loads(self.text) if self.kind == "json_schema" else {"type": "object"}
        return llg.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_DEFAULTS)


def spec_from_response_format(obj: Any) -> ConstraintSpec | None:
    """OpenAI's `response_format`: {"type": "text"} -> None, {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name", "schema", "strict", "description"}}.
    Every schema is enforced ("strict" is accepted and always true here)."""
    if not isinstance(obj, dict):
        raise InputError(f"response_format must be an object, not {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ConstraintSpec("json_object")
    if kind != "json_schema":
        raise InputError(f"response_format.type must be 'text', 'json_object' or 'json_schema', not {kind!r}")
    spec = obj.get("json_schema")
    if not isinstance(spec, dict):
        raise InputError("response_format of type json_schema needs a json_schema object"
                         " ({\"name\": ..., \"schema\": {...}})")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise InputError(f"response_format.json_schema.name must be 1 to 64 letters, digits, '_' or '-', not {name!r}")
    if not isinstance(spec.get("strict", False), bool):
        raise InputError(f"response_format.json_schema.strict must be true or false, not {spec['strict']!r}")
    if not isinstance(spec.get("description", ""), str):
        raise InputError("response_format.json_schema.description must be a string")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InputError(f"response_format.json_schema.schema must be a JSON schema object, not {schema!r:.60}")
    return ConstraintSpec.from_schema(schema)


class Vocabulary:
    """One tokenizer's llguidance token table, sized to the model's logits."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, eos_token_id: int | None):
        llg = _llguidance()
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.text_vocab = min(tokenizer.get_vocab_size(), vocab_size)
        text = tokenizer.to_str()
        decoders = _decoder_types(json.loads(text).get("decoder"))
        self.first_ok: np.ndarray | None = None   # tokens allowed as the first one, where not all are
        if "ByteLevel" in decoders:               # bytes add up: every token reads the same anywhere
            self.handle = self._native(llg, text)
            return
        texts = _Texts(tokenizer)
        if "ByteFallback" in decoders:
            self.handle = self._native(llg, text)
        else:
            self.handle = llg.LLTokenizer(llg.TokenizerWrapper(_TokenTable(tokenizer, eos_token_id, texts)))
        self.first_ok = texts.stands_alone()[:self.text_vocab]
        if not self.first_ok.any():
            raise InputError("no token of this tokenizer decodes alone as it does after another (its decoder puts"
                             " a separator between tokens), so constrained text cannot be spelt with it")
        if eos_token_id is not None and eos_token_id < self.text_vocab:
            self.first_ok[eos_token_id] = True    # the grammar decides whether an empty answer may end

    def _native(self, llg, text: str):
        try:
            return llg.LLTokenizer(text, eos_token=self.eos_token_id)
        except ValueError as e:
            raise InputError(f"llguidance cannot read this tokenizer.json: {e}") from None


def _decoder_types(decoder: dict | None) -> set[str]:
    if not decoder:
        return set()
    return {decoder.get("type")}.union(*(_decoder_types(d) for d in decoder.get("decoders", [])))


class _Texts:
    """What a tokenizer's decoder makes of each token: alone, and after an ordinary token."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.n = n = tokenizer.get_vocab_size()
        self.special = {t for t, added in tokenizer.get_added_tokens_decoder().items() if added.special}
        self.anchor = next((t for t in range(n) if t not in self.special and self.decode([t])), None)
        if self.anchor is None:
            raise InputError("the tokenizer has no ordinary token with text")
        self.head = self.decode([self.anchor])
        self.alone = self.decode_all(lambda t: [t])
        self.after = [s[len(self.head):] if s.startswith(self.head) else None
                      for s in self.decode_all(lambda t: [self.anchor, t])]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def decode_all(self, ids_of) -> list[str]:
        return self.tokenizer.decode_batch([ids_of(t) for t in range(self.n)], skip_special_tokens=False)

    def stands_alone(self) -> np.ndarray:
        """Which tokens decode alone to the text they add after another token."""
        return np.array([t not in self.special and a == c for t, (a, c) in enumerate(zip(self.alone, self.after))], bool)


class _TokenTable:
    """What llguidance's TokenizerWrapper reads for a tokenizer it cannot read itself: each
    token's bytes as its decoder writes them after another token, and an encoder."""

    def __init__(self, tokenizer: Tokenizer, eos_token_id: int | None, texts: _Texts):
        after, tail = texts.after, texts.after[texts.anchor]
        # a token whose text between two others is not its text after one depends on its neighbours
        between = texts.decode_all(lambda t: [texts.anchor, t, texts.anchor])
        unusable = {t for t in range(texts.n) if t in texts.special or not after[t] or tail is None
                    or between[t] != texts.head + after[t] + tail}
        self.special_token_ids = sorted(unusable)   # llguidance never lets these spell text
        self.tokens = [b"" if t in unusable else after[t].encode() for t in range(texts.n)]
        self.eos_token_id = eos_token_id
        self.bos_token_id = None
        self.tokenizer = tokenizer
        self.by_bytes = {b: t for t, b in enumerate(self.tokens) if b}
        self.longest = max(map(len, self.by_bytes), default=1)

    def __call__(self, text: bytes | str) -> list[int]:
        """Token ids that spell `text` (the tokenizer's own when they do, else longest-match)."""
        data = text if isinstance(text, bytes) else text.encode()
        ids = self.tokenizer.encode(data.decode("utf-8", "replace"), add_special_tokens=False).ids
        if b"".join(self.tokens[t] for t in ids) == data:
            return ids
        out, i = [], 0
        while i < len(data):
            for size in range(min(self.longest, len(data) - i), 0, -1):
                t = self.by_bytes.get(data[i:i + size])
                if t is not None:
                    out.append(t)
                    i += size
                    break
            else:
                i += 1   # a byte no token spells: the grammar cannot be spelt there
        return out


_LOCK = threading.Lock()
_DIGESTS: dict[int, tuple[Any, str]] = {}   # id(tokenizer) -> (the tokenizer, pinned; its tokenizer.json's digest)
_VOCABS: dict[tuple, Vocabulary] = {}
_GRAMMARS: dict[tuple, Grammar] = {}


def _cached(cache: dict, key, make, limit: int):
    """cache[key], made on first use; the oldest entry goes when `limit` are held."""
    with _LOCK:
        if key in cache:
            return cache[key]
    value = make()   # outside the lock: a build takes up to a second
    with _LOCK:
        if key not in cache and len(cache) >= limit:
            cache.pop(next(iter(cache)))
        return cache.setdefault(key, value)


def _key(tokenizer: Tokenizer, vocab_size: int, eos_token_id: int | None) -> tuple:
    digest = _cached(_DIGESTS, id(tokenizer),
                     lambda: (tokenizer, hashlib.sha256(tokenizer.to_str().encode()).hexdigest()), 16)[1]
    return digest, vocab_size, eos_token_id


def vocabulary(tokenizer: Tokenizer, vocab_size: int, eos_token_id: int | None) -> Vocabulary:
    """The token table of this tokenizer.json for a model of `vocab_size` logits, built once."""
    return _cached(_VOCABS, _key(tokenizer, vocab_size, eos_token_id),
                   lambda: Vocabulary(tokenizer, vocab_size, eos_token_id), 8)


class Grammar:
    """A spec compiled against one vocabulary: made once, copied for each request."""

    def __init__(self, spec: ConstraintSpec, vocab: Vocabulary):
        llg = _llguidance()
        self.spec, self.vocab = spec, vocab
        self.matcher = llg.LLMatcher(vocab.handle, spec.grammar_text(), log_level=0)
        if self.matcher.is_error():
            raise InputError(f"bad {spec.kind.replace('_', ' ')}: {self.matcher.get_error().splitlines()[0]}")

    @classmethod
    def compile(cls, spec: ConstraintSpec, tokenizer: Tokenizer, vocab_size: int,
                eos_token_id: int | None) -> Grammar:
        """The cached grammar of `spec` for this tokenizer and model vocabulary."""
        vocab = vocabulary(tokenizer, vocab_size, eos_token_id)
        key = (*_key(tokenizer, vocab_size, eos_token_id), spec)
        return _cached(_GRAMMARS, key, lambda: cls(spec, vocab), 64)

    def constraint(self) -> Constraint:
        return Constraint(self)


_WORKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reelrt-grammar")


class Constraint:
    """One request's place in the grammar. Not thread-safe: one request, one caller."""

    def __init__(self, grammar: Grammar):
        self.grammar = grammar
        self.vocab = v = grammar.vocab
        self.matcher = grammar.matcher.deep_copy()
        self.bits = np.zeros((v.handle.vocab_size + 31) // 32, np.int32)
        self.what = grammar.spec.kind.replace("_", " ")   # for errors: "json schema", "grammar"
        self.tokens = 0           # accepted so far
        self.pending: Future | None = None
        self.fresh = False        # `bits` hold the mask of the present state
        self.done = self.matcher.is_stopped()

    def start_mask(self) -> None:
        """Compute the next mask on a worker thread while the caller runs the model; allowed()
        collects it. Until then only is_done() may be called."""
        if self.pending is None and not self.fresh:
            self.pending = _WORKERS.submit(self._fill)

    def allowed(self) -> np.ndarray:
        """A new bool mask over the model's vocabulary: True where the grammar admits the token next."""
        self._wait()
        if not self.fresh:
            self._fill()
        v = self.vocab
        mask = np.unpackbits(self.bits.view(np.uint8), count=v.vocab_size, bitorder="little").view(bool)
        mask[v.text_vocab:] = False
        if v.eos_token_id is None:
            mask[v.handle.eos_token:v.handle.eos_token + 1] = False
        if self.tokens == 0 and v.first_ok is not None:
            mask[:v.text_vocab] &= v.first_ok
        if not mask.any() and not self.done:
            raise InputError(f"the {self.what} admits no token of this vocabulary after {self.tokens} tokens"
                             " (the tokenizer cannot spell what it requires)")
        return mask

    def accept(self, token_id: int) -> None:
        """Advance past the sampled token; InputError when the grammar refuses it (nothing changes)."""
        self._wait()
        if not 0 <= token_id < self.vocab.text_vocab or self.matcher.try_consume_tokens([int(token_id)]) != 1:
            raise InputError(f"token {token_id} is not allowed by the {self.what} after {self.tokens} tokens")
        self._moved(1)

    def forced(self, limit: int | None = None) -> list[int]:
        """The tokens that must come next whatever the model says (at most `limit`), accepted
        here: the caller appends them to the output and feeds them to the model in one step."""
        self._wait()
        if self.done:
            return []
        ids = self.matcher.compute_ff_tokens()[:limit]
        if self.tokens == 0 and self.vocab.first_ok is not None:
            ids = ids if ids and self.vocab.first_ok[ids[0]] else []
        if ids:
            if not self.matcher.consume_tokens(ids):
                raise ReelrtError(f"the grammar refused its own forced tokens: {self.matcher.get_error()}")
            self._moved(len(ids))
        return ids

    def is_done(self) -> bool:
        """Nothing but end-of-sequence can follow (or it was accepted): the answer is complete."""
        return self.done

    def _fill(self) -> None:
        self.matcher.unsafe_compute_mask_ptr(self.bits.ctypes.data, self.bits.nbytes)
        self.fresh = True

    def _moved(self, tokens: int) -> None:
        self.tokens += tokens
        self.fresh = False
        self.done = self.matcher.is_stopped()

    def _wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()
        if self.matcher.is_error():
            raise ReelrtError(f"grammar matcher failed: {self.matcher.get_error()}")
