"""Structured output: random logits through a grammar mask still give text that parses and validates.

The loop below is the one an engine runs (mask -> pick -> accept, forced tokens appended), with
logits drawn at random, so only the constraint keeps the text in shape; the text checked is the
tokenizer's decode of the ids, what a client sees.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("llguidance")
jsonschema = pytest.importorskip("jsonschema")

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers  # noqa: E402

from reelrt.bench import grammar as bench_grammar  # noqa: E402
from reelrt.runtime.bundle import open_bundle  # noqa: E402
from reelrt.runtime.errors import InputError  # noqa: E402
from reelrt.runtime.tasks.generation.grammar import (  # noqa: E402
    ConstraintSpec, Grammar, spec_from_response_format, vocabulary)
from reelrt.runtime.tasks.tokenizer import read_tokenizer  # noqa: E402

# the bench's NPC answer (enums, short strings, a nested object, a list, bounded integers) with an
# unbounded JSON number for the distance
NPC = copy.deepcopy(bench_grammar.NPC)
NPC["properties"]["target"]["properties"]["distance"] = {"type": "number"}


def sample(constraint, vocab_size: int, eos: int | None, rng: np.random.Generator, budget: int = 400,
           background: bool = False) -> tuple[list[int], int]:
    """Random-logit decoding under `constraint`: the ids and the decode steps they took."""
    out, steps = [], 0
    while not constraint.is_done() and len(out) < budget:
        out += constraint.forced()
        if constraint.is_done():
            break
        if background:
            constraint.start_mask()
        mask = constraint.allowed()
        assert mask.shape == (vocab_size,) and mask.dtype == bool
        logits = rng.standard_normal(vocab_size)
        logits[~mask] = -np.inf
        token = int(np.argmax(logits))
        steps += 1
        constraint.accept(token)
        if token == eos:
            break
        out.append(token)
    return out, steps


@pytest.fixture(scope="module")
def gpt2(gpt2_tiny_bundle):
    bundle = open_bundle(gpt2_tiny_bundle)
    return read_tokenizer(bundle), int(bundle.manifest.extra["vocab_size"]), bundle.manifest.tokenizer["eos_token_id"]


def char_tokenizer(decoder=None) -> Tokenizer:
    """A user's WordLevel tokenizer.json: printable ASCII one character a token, a few words, its own
    end-of-text token; `decoder` joins the tokens (Fuse by default: a character-level model's)."""
    words = ["mood", "angry", "calm", "afraid", "line", "name", "true", "false", "null", "hello", "items"]
    vocab = {"[UNK]": 0, "</s>": 1}
    for piece in [chr(c) for c in range(32, 127)] + words:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="isolated") if decoder else \
        pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoder or decoders.Fuse()
    tok.add_special_tokens(["[UNK]", "</s>"])
    return tok


def metaspace_tokenizer() -> Tokenizer:
    """A WordLevel tokenizer whose Metaspace decoder drops the first token's leading space."""
    vocab = {"<unk>": 0, "<eos>": 1}
    for piece in [chr(c) for c in range(33, 127)] + ["▁" + chr(c) for c in range(33, 127)] + ["▁"]:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(["<unk>", "<eos>"])
    return tok


def byte_fallback_tokenizer() -> Tokenizer:
    """A sentencepiece-style BPE as Llama's tokenizer.json has it: '▁' for spaces, byte tokens for
    what the vocabulary lacks, a decoder that strips the first space."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"<0x{i:02X}>": 3 + i for i in range(256)}
    for piece in [chr(c) for c in range(33, 127)] + ["▁", "▁{", "▁b", "mood", "▁calm", '":']:
        vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok


def check_json_outputs(spec, tokenizer, vocab_size, eos, n=100, seed=0, background=False):
    grammar = Grammar.compile(spec, tokenizer, vocab_size, eos)
    rng = np.random.default_rng(seed)
    schema = json.loads(spec.text) if spec.kind == "json_schema" else {"type": "object"}
    texts = []
    for _ in range(n):
        ids, _ = sample(grammar.constraint(), vocab_size, eos, rng, background=background)
        text = tokenizer.decode(ids, skip_special_tokens=False)
        jsonschema.validate(json.loads(text), schema)
        texts.append(text)
    return texts


def test_gpt2_bundle_schema_answers_all_parse_and_validate(gpt2):
    """100 of 100 random-logit answers of the bundle's byte-level BPE are valid NPC objects."""
    tokenizer, vocab_size, eos = gpt2
    texts = check_json_outputs(ConstraintSpec("json_schema", json.dumps(NPC)), tokenizer, vocab_size, eos)
    assert len(set(texts)) > 90          # random answers, not one forced string
    assert {json.loads(t)["mood"] for t in texts} == {"angry", "calm", "afraid"}


def test_eos_is_allowed_only_once_the_text_is_complete(gpt2):
    """An integer may go on after each digit, so EOS comes and goes with the text's completeness."""
    tokenizer, vocab_size, eos = gpt2
    grammar = Grammar.compile(ConstraintSpec("json_schema", '{"type": "integer"}'), tokenizer, vocab_size, eos)
    rng, ended = np.random.default_rng(1), 0
    for _ in range(20):
        c, ids = grammar.constraint(), []
        while not c.is_done() and len(ids) < 40:
            ids += c.forced()
            mask = c.allowed()
            text = tokenizer.decode(ids)
            assert mask[eos] == bool(re.fullmatch(r"-?(0|[1-9][0-9]*)", text)), text
            logits = np.where(mask, rng.standard_normal(vocab_size), -np.inf)
            token = int(np.argmax(logits))
            c.accept(token)
            if token != eos:
                ids.append(token)
        if c.is_done():
            ended += 1
            assert isinstance(json.loads(tokenizer.decode(ids)), int)
    assert ended >= 3


def test_forced_tokens_spell_the_keys_and_save_decode_steps(gpt2):
    tokenizer, vocab_size, eos = gpt2
    grammar = Grammar.compile(ConstraintSpec("json_schema", json.dumps(NPC)), tokenizer, vocab_size, eos)
    c = grammar.constraint()
    first = c.forced()
    assert tokenizer.decode(first) == '{"mood":"'
    assert c.forced() == []                       # accepted: nothing more is forced until a choice
    ids, steps = sample(c, vocab_size, eos, np.random.default_rng(2))
    assert steps < len(first + ids)


def test_a_mask_computed_in_the_background_is_the_same_mask(gpt2):
    tokenizer, vocab_size, eos = gpt2
    spec = ConstraintSpec("json_schema", json.dumps(NPC))
    now = check_json_outputs(spec, tokenizer, vocab_size, eos, n=10, seed=5)
    assert check_json_outputs(spec, tokenizer, vocab_size, eos, n=10, seed=5, background=True) == now


def test_json_object_gives_objects(gpt2):
    """Any JSON object: with random logits and no schema the text may run past the budget; those
    that end are objects."""
    tokenizer, vocab_size, eos = gpt2
    grammar = Grammar.compile(ConstraintSpec("json_object"), tokenizer, vocab_size, eos)
    rng = np.random.default_rng(3)
    ended = 0
    for _ in range(40):
        c = grammar.constraint()
        ids, _ = sample(c, vocab_size, eos, rng, budget=200)
        if c.is_done():
            ended += 1
            assert isinstance(json.loads(tokenizer.decode(ids)), dict)
        else:
            assert tokenizer.decode(ids).startswith("{")
    assert ended >= 5


@pytest.mark.parametrize("grammar, pattern", [
    ('start: greeting " " name "!"\ngreeting: "hello" | "hi"\nname: /[a-z]{1,8}/', r"(hello|hi) [a-z]{1,8}!"),
    ('root ::= ("yes" | "no") " " [0-9] [0-9]?', r"(yes|no) [0-9]{1,2}"),     # llama.cpp's GBNF
    ('start: "says: " answer\nanswer: %json {"type": "object", "properties": {"a": {"enum": [1, 2, 3]},'
     ' "b": {"type": "string", "maxLength": 3}}, "required": ["a", "b"], "additionalProperties": false,'
     ' "x-guidance": {"whitespace_flexible": false}}',
     r'says: \{"a":[123],"b":"[^"]{0,3}"\}'),                                 # a schema inside a grammar
])
def test_a_grammar_constrains_the_text(gpt2, grammar, pattern):
    tokenizer, vocab_size, eos = gpt2
    g = Grammar.compile(ConstraintSpec("grammar", grammar), tokenizer, vocab_size, eos)
    rng = np.random.default_rng(4)
    texts = {tokenizer.decode(sample(g.constraint(), vocab_size, eos, rng)[0]) for _ in range(30)}
    assert all(re.fullmatch(pattern, t) for t in texts), texts
    assert len(texts) > 5


def test_a_user_wordlevel_tokenizer_with_a_larger_model_vocabulary():
    """A character-level WordLevel tokenizer.json (not byte-level: its token table is made
    through its decoder); the model has 13 more logits than the tokenizer has tokens."""
    tokenizer = char_tokenizer()
    vocab_size = tokenizer.get_vocab_size() + 13
    spec = ConstraintSpec("json_schema", json.dumps(NPC))
    check_json_outputs(spec, tokenizer, vocab_size, eos=1)
    c = Grammar.compile(spec, tokenizer, vocab_size, 1).constraint()
    c.forced()
    assert not c.allowed()[tokenizer.get_vocab_size():].any()


def test_a_decoder_that_drops_the_first_space():
    """Metaspace writes '▁{' as '{' first and ' {' later: the first token must be one whose text
    stands alone, so the decoded answer is still exactly the grammar's."""
    tokenizer = metaspace_tokenizer()
    spec = ConstraintSpec("json_schema", json.dumps(NPC))
    texts = check_json_outputs(spec, tokenizer, tokenizer.get_vocab_size(), eos=1, n=30)
    assert all(t.startswith("{") for t in texts)


def test_a_byte_fallback_tokenizer_spells_any_character():
    """llguidance reads a byte-fallback tokenizer.json itself; characters the vocabulary lacks
    come as UTF-8 byte tokens, and the decoded answers are still valid."""
    tokenizer = byte_fallback_tokenizer()
    texts = check_json_outputs(ConstraintSpec("json_schema", json.dumps(NPC)), tokenizer,
                               tokenizer.get_vocab_size() + 5, eos=2, n=30)
    assert any(ord(ch) > 127 for t in texts for ch in t)


@pytest.mark.parametrize("make, eos", [(byte_fallback_tokenizer, 2), (metaspace_tokenizer, 1)])
def test_a_first_token_whose_space_the_decoder_drops_is_not_taken(make, eos):
    """' b' can be written only with '▁b' first, which the client would read as 'b': not in the
    language, so the answer is 'a'; later tokens keep their space."""
    tokenizer = make()
    vocab_size = tokenizer.get_vocab_size()
    g = Grammar.compile(ConstraintSpec("grammar", 'start: ("a" | " b") " b"'), tokenizer, vocab_size, eos)
    rng = np.random.default_rng(9)
    assert {tokenizer.decode(sample(g.constraint(), vocab_size, eos, rng)[0]) for _ in range(20)} == {"a b"}


def test_a_decoder_that_separates_every_token_is_refused():
    tokenizer = char_tokenizer()
    tokenizer.decoder = None   # tokenizers then joins tokens with spaces: '{ " m o o d'
    with pytest.raises(InputError, match="separator"):
        Grammar.compile(ConstraintSpec("json_object"), tokenizer, tokenizer.get_vocab_size(), 1)


def test_a_refused_token_is_an_input_error(gpt2):
    tokenizer, vocab_size, eos = gpt2
    c = Grammar.compile(ConstraintSpec("json_object"), tokenizer, vocab_size, eos).constraint()
    for refused in (tokenizer.encode("x").ids[0], eos, vocab_size - 1 + 10):
        with pytest.raises(InputError, match="not allowed"):
            c.accept(refused)
    c.accept(tokenizer.encode("{").ids[0])        # the state is as it was: "{" still opens the object
    assert tokenizer.decode(c.forced()) == "" and not c.is_done()


def test_compiled_once_per_tokenizer_and_spec(gpt2, gpt2_tiny_bundle):
    tokenizer, vocab_size, eos = gpt2
    spec = ConstraintSpec("json_schema", json.dumps(NPC))
    again = Tokenizer.from_file(str(gpt2_tiny_bundle / "tokenizer.json"))   # the same file, another object
    assert vocabulary(again, vocab_size, eos) is vocabulary(tokenizer, vocab_size, eos)
    assert Grammar.compile(spec, again, vocab_size, eos) is Grammar.compile(ConstraintSpec("json_schema", json.dumps(NPC)),
                                                                             tokenizer, vocab_size, eos)


@pytest.mark.parametrize("kind, text, message", [
    ("xml", "", "kind must be one of"),
    ("json_schema", "{not json", "not JSON"),
    ("json_schema", "[1, 2]", "must be a JSON object"),
    ("json_schema", '{"type": "mood"}', "bad json schema"),
    ("json_schema", '{"type": "string", "format": "weird"}', "format"),
    ("json_object", '{"type": "object"}', "takes no text"),
    ("grammar", "  ", "needs the grammar"),
    ("grammar", "start: greeting\n", "bad grammar"),
    ("grammar", 'root ::= "a" (', "bad grammar"),
    ("grammar", "start: /[/", "bad grammar"),
])
def test_bad_specs_are_input_errors(kind, text, message):
    with pytest.raises(InputError, match=message):
        ConstraintSpec(kind, text)


def test_response_format():
    assert spec_from_response_format({"type": "text"}) is None
    assert spec_from_response_format({"type": "json_object"}) == ConstraintSpec("json_object")
    spec = spec_from_response_format({"type": "json_schema", "json_schema": {"name": "npc", "schema": NPC, "strict": True}})
    assert spec == ConstraintSpec.from_schema(NPC) == ConstraintSpec.from_schema(json.dumps(NPC))
    with pytest.raises(InputError, match="dict or its JSON text"):
        ConstraintSpec.from_schema(["type", "object"])


@pytest.mark.parametrize("obj, message", [
    ("json_object", "must be an object"),
    ({"type": "yaml"}, "response_format.type"),
    ({}, "response_format.type"),
    ({"type": "json_schema"}, "needs a json_schema object"),
    ({"type": "json_schema", "json_schema": {"schema": NPC}}, "name"),
    ({"type": "json_schema", "json_schema": {"name": "a b", "schema": NPC}}, "name"),
    ({"type": "json_schema", "json_schema": {"name": "npc"}}, "schema must be"),
    ({"type": "json_schema", "json_schema": {"name": "npc", "schema": "{}"}}, "schema must be"),
    ({"type": "json_schema", "json_schema": {"name": "npc", "schema": NPC, "strict": "yes"}}, "strict"),
    ({"type": "json_schema", "json_schema": {"name": "npc", "schema": {"type": "nope"}}}, "bad json schema"),
])
def test_malformed_response_formats_are_input_errors(obj, message):
    with pytest.raises(InputError, match=message):
        spec_from_response_format(obj)


PROBE = """
import json, sys
import numpy as np
from tokenizers import Tokenizer
from reelrt.runtime.tasks.generation.grammar import ConstraintSpec, Grammar
tok = Tokenizer.from_file(sys.argv[1])
c = Grammar.compile(ConstraintSpec("json_object"), tok, tok.get_vocab_size(), 0).constraint()
c.forced(); c.start_mask(); assert c.allowed().any()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "onnx"))))
"""


def test_the_constraint_imports_no_training_packages(gpt2_tiny_bundle):
    result = subprocess.run([sys.executable, "-c", PROBE, str(gpt2_tiny_bundle / "tokenizer.json")],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_bench_reports_the_mask_against_the_decode_step(gpt2_tiny_bundle, tmp_path, capsys):
    """bench/grammar.py end to end on the tiny bundle (its figures are the bench's, not checked)."""
    from reelrt.bench.grammar import main
    out = tmp_path / "grammar.json"
    assert main(["--bundle", str(gpt2_tiny_bundle), "--tokenizer", str(gpt2_tiny_bundle / "tokenizer.json"),
                 "--answers", "4", "--model-answers", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["random_logits"]["valid"] == 4
    assert all(report[f"{kind} ({mode})"]["valid"] == 2 for kind in ("model", "idle step")
               for mode in ("after the step", "background"))
    assert "decode steps per generated token" in capsys.readouterr().out


def test_forced_tokens_come_in_the_limit_asked(gpt2):
    tokenizer, vocab_size, eos = gpt2
    grammar = Grammar.compile(ConstraintSpec("json_schema", json.dumps(NPC)), tokenizer, vocab_size, eos)
    whole, parts = grammar.constraint().forced(), grammar.constraint()
    assert len(whole) > 2
    assert parts.forced(limit=2) == whole[:2] and parts.forced() == whole[2:]


@pytest.mark.parametrize("make", [char_tokenizer, None], ids=["wordlevel", "gpt2"])
def test_a_model_without_an_end_token_ends_when_the_grammar_does(gpt2, make):
    """No EOS id: no token stands for one (GPT-2's <|endoftext|> stays out even where an integer
    could end), and an answer ends when nothing can follow."""
    tokenizer, vocab_size, _ = (make(), make().get_vocab_size(), None) if make else gpt2
    specials = list(tokenizer.get_added_tokens_decoder())
    rng = np.random.default_rng(6)
    c = Grammar.compile(ConstraintSpec("json_schema", '{"type": "integer"}'), tokenizer, vocab_size, None).constraint()
    for _ in range(30):
        mask = c.allowed()
        assert mask.any() and not mask[specials].any()
        c.accept(int(np.argmax(np.where(mask, rng.standard_normal(vocab_size), -np.inf))))
    grammar = Grammar.compile(ConstraintSpec("json_schema", json.dumps(NPC)), tokenizer, vocab_size, None)
    for _ in range(20):
        ids, _ = sample(grammar.constraint(), vocab_size, None, rng)
        jsonschema.validate(json.loads(tokenizer.decode(ids)), NPC)


def test_without_llguidance_the_error_names_the_extra(monkeypatch):
    from reelrt.runtime.errors import BackendUnavailableError
    monkeypatch.setitem(sys.modules, "llguidance", None)   # what an install without the extra gives
    with pytest.raises(BackendUnavailableError, match=r"reelrt\[grammar\]"):
        ConstraintSpec("json_object")


def test_a_mask_started_in_the_background_is_computed_once(gpt2, monkeypatch):
    """start_mask() then is_done() then allowed(): one computation per step, on the worker."""
    import threading

    from reelrt.runtime.tasks.generation.grammar import Constraint
    tokenizer, vocab_size, eos = gpt2
    fills, real_fill = [], Constraint._fill
    monkeypatch.setattr(Constraint, "_fill", lambda self: (fills.append(threading.current_thread()), real_fill(self)))
    c = Grammar.compile(ConstraintSpec("json_schema", json.dumps(NPC)), tokenizer, vocab_size, eos).constraint()
    rng, steps = np.random.default_rng(8), 0
    while not c.is_done():
        c.forced()
        if c.is_done():
            break
        c.start_mask()
        assert not c.is_done()
        c.accept(int(np.argmax(np.where(c.allowed(), rng.standard_normal(vocab_size), -np.inf))))
        steps += 1
    assert len(fills) == steps and threading.current_thread() not in fills
