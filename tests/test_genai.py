"""A reelrt GPT-2 bundle is an onnxruntime-genai model folder: the real onnxruntime-genai package
opens it, and its greedy search and its tokenizer give exactly what reelrt gives."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import quantize_bundle

from reelrt.runtime import load

og = pytest.importorskip("onnxruntime_genai")

PROMPTS = ["The interpreter reads the statement", "x", "A quest: find the dragon before the winter and",
           "def f(x):\n    return x * 2\n\n"]
TEXTS = PROMPTS + ["  two  spaces, tabs\tand unicode: caf\u00e9 \u00fcber \u65e5\u672c \U0001f409", "<|endoftext|> after"]


@pytest.fixture(scope="module")
def bundles(gpt2_tiny_bundle, tmp_path_factory):
    """The export and the quantize passes that write GPT-2 bundles, each with its genai files."""
    root = tmp_path_factory.mktemp("genai")
    return {"fp32": gpt2_tiny_bundle, "int4": quantize_bundle(gpt2_tiny_bundle, root / "int4", "int4", block_size=16),
            "int8": quantize_bundle(gpt2_tiny_bundle, root / "int8", "int8", block_size=16),
            "fp16": quantize_bundle(gpt2_tiny_bundle, root / "fp16", "fp16")}


@pytest.fixture(scope="module")
def models(bundles):
    """name -> (onnxruntime-genai's model, reelrt's generator) on the same bundle."""
    return {name: (og.Model(str(path)), load(path)) for name, path in bundles.items()}


def genai_greedy(model, ids: list[int], new_tokens: int, eos: int) -> tuple[list[int], np.ndarray]:
    """genai's greedy search from token ids: the new ids (up to, not including, end-of-text, as
    reelrt's generate_ids returns them) and the logits each of them was chosen from."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    tokens, logits = [], []
    while not generator.is_done():
        logits.append(np.array(generator.get_logits()).reshape(-1))
        generator.generate_next_token()
        token = int(generator.get_next_tokens()[0])
        if token == eos:
            break
        tokens.append(token)
    return tokens, np.stack(logits)


def test_genai_config_names_what_the_graph_holds(bundles):
    for path in bundles.values():
        config = json.loads((path / "genai_config.json").read_text())
        decoder = config["model"]["decoder"]
        session = ort.InferenceSession(str(path / decoder["filename"]), providers=["CPUExecutionProvider"])
        layers = range(decoder["num_hidden_layers"])
        assert {i.name for i in session.get_inputs()} == {
            decoder["inputs"][k] for k in ("input_ids", "attention_mask", "position_ids")} | {
            decoder["inputs"][k] % i for k in ("past_key_names", "past_value_names") for i in layers}
        assert {o.name for o in session.get_outputs()} == {decoder["outputs"]["logits"]} | {
            decoder["outputs"][k] % i for k in ("present_key_names", "present_value_names") for i in layers}
        manifest = json.loads((path / "manifest.json").read_text())
        assert config["model"]["context_length"] == manifest["extra"]["max_context"]
        assert config["model"]["eos_token_id"] == manifest["tokenizer"]["eos_token_id"]
        assert config["search"]["past_present_share_buffer"] is True
        assert config["search"]["do_sample"] is (manifest["generation"]["temperature"] > 0)
        assert {"genai_config.json", "tokenizer.json", "tokenizer_config.json"} <= {a["path"] for a in manifest["artifacts"]}


@pytest.mark.parametrize("precision", ["fp32", "int8", "int4", "fp16"])
@pytest.mark.parametrize("prompt, new_tokens", [(PROMPTS[0], 24), (PROMPTS[1], 5), (PROMPTS[2], 60), (PROMPTS[3], 1)])
def test_genai_greedy_search_gives_reelrts_greedy_ids(models, precision, prompt, new_tokens):
    model, generator = models[precision]
    ids = generator.tokenizer.encode(prompt).ids
    ours = generator.generate_ids(ids, max_new_tokens=new_tokens)
    theirs, logits = genai_greedy(model, ids, new_tokens, generator.eos_token_id)
    assert theirs == ours
    # and the logits behind them, step by step, through reelrt's own decoder
    decoder = generator.decoder
    decoder.start(1)
    mine = [decoder.prefill(0, np.asarray(ids, np.int64)).copy()]
    for token in ours[:len(logits) - 1]:
        mine.append(decoder.decode(np.array([token]))[0].copy())
    np.testing.assert_allclose(logits, np.stack(mine), rtol=0, atol=1e-4)


def test_random_prompts_of_token_ids(models):
    """Random ids (not text) give varied continuations on random weights; batch of one each."""
    model, generator = models["fp32"]
    rng = np.random.default_rng(3)
    for length in (1, 3, 17, 90):
        ids = rng.integers(1, generator.vocab_size, length).tolist()
        ours = generator.generate_ids(ids, max_new_tokens=40, stop_token_ids=())
        theirs, _ = genai_greedy(model, ids, 40, eos=-1)
        assert theirs == ours


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_genai_tokenizer_gives_reelrts_ids(models, precision):
    model, generator = models[precision]
    tokenizer = og.Tokenizer(model)
    for text in TEXTS:
        ids = generator.tokenizer.encode(text).ids
        assert list(tokenizer.encode(text)) == ids, text
        # genai decodes as transformers does by default: special tokens left out
        assert tokenizer.decode(np.asarray(ids, np.int32)) == generator.tokenizer.decode(ids, skip_special_tokens=True)
