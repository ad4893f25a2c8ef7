"""GPT-2 export: checkpoints of any shape, fused operators, validation against transformers."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from reelrt.export import gpt2 as export_gpt2
from reelrt.export.gpt2_graph import expected_fused_counts, fused_counts
from reelrt.runtime.validation import ValidationError
from reelrt.models import gpt2
from reelrt.runtime import InputError, load


@pytest.fixture(scope="module")
def odd_checkpoint(tmp_path_factory):
    """A GPT-2 of a shape no named config has, saved as a transformers checkpoint with its tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config(n_layer=3, n_head=2, n_embd=32, vocab_size=600, n_positions=96,
                                       bos_token_id=0, eos_token_id=0)).eval()
    return gpt2.save_checkpoint(model, gpt2.train_tokenizer(600), tmp_path_factory.mktemp("ckpt") / "odd")


def test_tiny_export_records_fused_operators_and_validation(gpt2_tiny_bundle):
    manifest = json.loads((gpt2_tiny_bundle / "manifest.json").read_text())
    extra = manifest["extra"]
    assert extra["fused_ops"] == expected_fused_counts(extra["n_layer"])
    assert manifest["validation"]["greedy_tokens_identical"] == manifest["validation"]["greedy_steps"] == 64
    import onnx
    graph = onnx.load(str(gpt2_tiny_bundle / "model.onnx"))
    assert fused_counts(graph) == extra["fused_ops"]
    # no unfused attention, GELU or layer norm left in the graph
    assert not {n.op_type for n in graph.graph.node} & {"Softmax", "LayerNormalization", "Tanh", "Erf"}


def test_checkpoint_of_any_shape_exports_and_matches_transformers_greedy(odd_checkpoint, tmp_path):
    out = export_gpt2.export(tmp_path / "odd", checkpoint=odd_checkpoint, max_context=80, threads=1)
    generator = load(out, threads=1)
    assert (generator.config.n_layer, generator.config.max_context) == (3, 80)
    model = gpt2.load_checkpoint(odd_checkpoint)
    prompt = generator.tokenizer.encode("The module object is created and bound to the name.").ids
    ours = generator.generate_ids(prompt, max_new_tokens=48, stop_token_ids=())
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=48, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert ours == ref[0, len(prompt):].tolist()


def test_logits_match_transformers_through_the_runtime(gpt2_tiny_bundle):
    generator = load(gpt2_tiny_bundle, threads=1)
    model = gpt2.random_model("tiny", seed=0)  # the export's own seed: the same weights
    ids = np.random.default_rng(3).integers(0, 1000, 20)
    generator.decoder.start(1)
    prefill = generator.decoder.prefill(0, ids[:12]).copy()
    steps = [generator.decoder.decode(ids[i:i + 1])[0].copy() for i in range(12, 20)]
    with torch.no_grad():
        ref = model(torch.from_numpy(ids)[None]).logits[0].numpy()
    np.testing.assert_allclose(np.stack([prefill] + steps[:-1]), ref[11:19], atol=1e-4)


def test_a_wrong_graph_fails_validation_and_writes_nothing(monkeypatch, tmp_path):
    from reelrt.export import gpt2_graph
    original = gpt2_graph.build_decoder

    def off_by_a_bias(weights, *args):
        return original({**weights, "transformer.ln_f.bias": weights["transformer.ln_f.bias"] + 0.5}, *args)

    monkeypatch.setattr(gpt2_graph, "build_decoder", off_by_a_bias)
    with pytest.raises(ValidationError):
        export_gpt2.export(tmp_path / "bad", config="tiny", threads=1)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(config="tiny", max_context=1000), "max-context"),
    (dict(config="tiny", max_context=1), "max-context"),
    (dict(config="nope"), "unknown GPT-2 config"),
    (dict(), "exactly one"),
])
def test_bad_export_requests_raise_input_error(tmp_path, kwargs, match):
    with pytest.raises(InputError, match=match):
        export_gpt2.export(tmp_path / "x", **kwargs)


def test_a_directory_without_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        export_gpt2.export(tmp_path / "x", checkpoint=tmp_path / "empty")


def test_the_chat_template_is_the_checkpoints_or_the_one_given_else_the_default(odd_checkpoint, gpt2_tiny_bundle,
                                                                                tmp_path):
    from reelrt.cli import main
    from reelrt.runtime.tasks.generation.chat import DEFAULT_CHAT_TEMPLATE, chat_template, render
    tiny = load(gpt2_tiny_bundle, threads=1).manifest
    assert chat_template(tiny) == DEFAULT_CHAT_TEMPLATE   # a random config has no template: the documented default
    assert json.loads((gpt2_tiny_bundle / "tokenizer_config.json").read_text())["chat_template"] == DEFAULT_CHAT_TEMPLATE
    own = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(odd_checkpoint, checkpoint)
    (checkpoint / "tokenizer_config.json").write_text(json.dumps({"chat_template": own}))
    out = export_gpt2.export(tmp_path / "own", checkpoint=checkpoint, max_context=80, threads=1)
    manifest = load(out, threads=1).manifest
    assert chat_template(manifest) == own
    assert render(chat_template(manifest), [{"role": "user", "content": "hi"}]) == "<user>hi<assistant>"
    given = tmp_path / "template.jinja"
    given.write_text("{{ messages[-1]['content'] }} =>")
    assert main(["export", "gpt2", "--checkpoint", str(checkpoint), "--max-context", "80", "--out",
                 str(tmp_path / "given"), "--chat-template", str(given)]) == 0
    assert chat_template(load(tmp_path / "given", threads=1).manifest) == given.read_text()
    given.write_text("{% for %}")
    assert main(["export", "gpt2", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "bad"),
                 "--chat-template", str(given)]) == 2
    assert not (tmp_path / "bad").exists()
