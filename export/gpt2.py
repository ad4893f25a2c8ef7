"""`reelrt export gpt2`: a GPT-2 checkpoint (or a named random config) to an fp32 bundle.

The graph is written directly from the weights (export/gpt2_graph.py) and proven before the
bundle is put in place: last-position logits against transformers at several prompt lengths,
through prefill and through a decode step on the cache, and greedy tokens identical to
transformers' `generate` for 64 steps.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from reelrt.export.provenance import provenance
from reelrt.runtime.validation import ValidationError, check, compare
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.bundle.layout import REFERENCE_INPUTS, REFERENCE_OUTPUTS
from reelrt.runtime.errors import InputError
from reelrt.runtime.bundle.manifest import Manifest, TensorSpec
from reelrt.runtime.tasks.generation.chat import DEFAULT_CHAT_TEMPLATE, check_template
from reelrt.runtime.tasks.generation.config import DecoderConfig
from reelrt.runtime.tasks.generation.decoder import KINDS, PAST, PRESENT
from reelrt.runtime.tasks.generation.defaults import GENERATION

GREEDY_STEPS = 64
VALIDATION_PROMPT = ("The interpreter reads the statement, evaluates each expression from left to right,"
                     " and binds the resulting object to the name.")
# a random-weight model gets a tokenizer with at most this many tokens (its training takes seconds)
RANDOM_TOKENIZER_VOCAB = 8192


def main(args: argparse.Namespace) -> int:
    template = None
    if args.chat_template is not None:
        try:
            template = Path(args.chat_template).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read the chat template {args.chat_template}: {e}") from None
    out = export(checkpoint=args.checkpoint, config=args.config, max_context=args.max_context, out=args.out,
                 chat_template=template)
    print(f"wrote {out}")
    return 0


def export(out: str | Path, checkpoint: str | Path | None = None, config: str | None = None,
           max_context: int | None = None, threads: int | None = None, seed: int = 0,
           chat_template: str | None = None) -> Path:
    """Write a validated fp32 GPT-2 bundle from a checkpoint directory or a named random config.
    chat_template: a Jinja chat template; None takes the checkpoint's tokenizer_config.json one,
    else reelrt's plain-transcript default (runtime/tasks/generation/chat.py)."""
    from reelrt.models import gpt2
    if (checkpoint is None) == (config is None):
        raise InputError("give exactly one of a checkpoint directory or a config name")
    if checkpoint is not None:
        model, tokenizer = gpt2.load_checkpoint(checkpoint), gpt2.checkpoint_tokenizer(checkpoint)
        if tokenizer is None:
            raise InputError(gpt2.NO_TOKENIZER.format(path=str(checkpoint)))
        source = "checkpoint"
    else:
        model = gpt2.random_model(config, seed=seed)
        tokenizer = gpt2.train_tokenizer(min(model.config.vocab_size, RANDOM_TOKENIZER_VOCAB))
        source = f"random weights, config {config!r}, seed {seed}"
    cfg = model.config
    max_context = max_context or cfg.n_positions
    if not 2 <= max_context <= cfg.n_positions:
        raise InputError(f"--max-context must be between 2 and the model's {cfg.n_positions} positions, not {max_context}")
    if tokenizer.get_vocab_size() > cfg.vocab_size:
        raise InputError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens, more than the model's {cfg.vocab_size}")
    eos_ids, generation = gpt2.checkpoint_generation(checkpoint, cfg, tokenizer)
    eos = eos_ids[0] if eos_ids else None
    random_weights = checkpoint is None
    template = check_template(chat_template or gpt2.checkpoint_chat_template(checkpoint) or DEFAULT_CHAT_TEMPLATE)

    from reelrt.export.genai import write_genai_files
    from reelrt.export.gpt2_graph import build_decoder, expected_fused_counts, fused_counts, save, streamed_weight_bytes
    weights = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    graph = build_decoder(weights, cfg.n_layer, cfg.n_head, cfg.layer_norm_epsilon, max_context)
    del weights
    counts = fused_counts(graph)
    if counts != expected_fused_counts(cfg.n_layer):
        raise ValidationError(f"fused operators {counts}, expected {expected_fused_counts(cfg.n_layer)}")
    decoder = DecoderConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, head_dim=cfg.n_embd // cfg.n_head,
                           max_context=max_context, vocab_size=cfg.vocab_size, n_embd=cfg.n_embd, eos_token_id=eos,
                           extra={"fused_ops": counts, "weight_bytes_per_token": streamed_weight_bytes(graph)})
    facts = decoder.to_facts()

    generation = dict(GENERATION)
    with BundleWriter(out) as w:
        save(graph, w.dir / "model.onnx")
        del graph
        tokenizer.save(str(w.dir / "tokenizer.json"))
        write_genai_files(w.dir, decoder, generation, gpt2.EOS_TOKEN, template)
        prompt = tokenizer.encode(VALIDATION_PROMPT).ids
        validation = validate(model, w.dir / "model.onnx", facts, prompt, random_weights, threads)
        write_reference(model, prompt[:max_context - 1], decoder_outputs(facts)[0], w.dir)
        return w.commit(Manifest(
            family="gpt2", task="text-generation", precision="fp32", model="model.onnx",
            inputs=decoder_inputs(facts), outputs=decoder_outputs(facts), artifacts={},
            tokenizer={"path": "tokenizer.json", "kind": "byte-level-bpe", "vocab_size": tokenizer.get_vocab_size(),
                       "eos_token_id": eos, "chat_template": template},
            generation=generation,
            provenance=provenance(source, Path(checkpoint).resolve() if checkpoint else None, random_weights=random_weights,
                                  **({"random_config": config, "seed": seed} if random_weights else {})),
            validation=validation, extra=facts))


def write_reference(model, prompt: list[int], logits_spec: TensorSpec, directory: Path) -> None:
    """reference/: a real prompt's token ids and transformers' next-token logits after it, shaped as
    the graph declares its logits (what quantize and compile check a new graph against;
    runtime/reference.py builds the feeds)."""
    import torch
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[:, -1].float().numpy()
    (directory / "reference").mkdir()
    np.savez(directory / REFERENCE_INPUTS, input_ids=np.asarray([prompt], np.int64))
    np.savez(directory / REFERENCE_OUTPUTS, **{logits_spec.name: logits.reshape(1, *logits_spec.shape[1:])})


def decoder_inputs(facts: dict) -> list[TensorSpec]:
    specs = [TensorSpec("input_ids", "int64", ("batch", "sequence")),
             TensorSpec("attention_mask", "int64", ("batch", "total_sequence_length")),
             TensorSpec("position_ids", "int64", ("batch", "sequence"))]
    return specs + [TensorSpec(PAST.format(layer=i, kind=kind), "float32", _cache_shape(facts))
                    for i in range(facts["n_layer"]) for kind in KINDS]


def decoder_outputs(facts: dict) -> list[TensorSpec]:
    return [TensorSpec("logits", "float32", ("batch", 1, facts["vocab_size"]))] + [
        TensorSpec(PRESENT.format(layer=i, kind=kind), "float32", _cache_shape(facts))
        for i in range(facts["n_layer"]) for kind in KINDS]


def _cache_shape(facts: dict) -> tuple:
    return ("batch", facts["n_head"], facts["max_context"], facts["head_dim"])


def open_decoder(model_path: Path, facts: dict, threads: int | None = None):
    """A KVDecoder on a model file that is not in a bundle yet (validation before the write)."""
    import onnxruntime as ort

    from reelrt.runtime.tasks.generation.decoder import KVDecoder
    from reelrt.runtime.backends.session import physical_cores
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return KVDecoder.from_facts(session, facts)


def validate(model, model_path: Path, facts: dict, prompt: list[int], random_weights: bool,
             threads: int | None = None) -> dict:
    """Logits and greedy tokens of the ONNX decoder against transformers; raise ValidationError out of tolerance."""
    import torch
    decoder = open_decoder(model_path, facts, threads)
    max_context = facts["max_context"]
    rng = np.random.default_rng(0)
    checks = {}
    for n in sorted({1, 7, 32, max_context // 2}):
        if n + 1 > max_context:
            continue
        ids = rng.integers(0, facts["vocab_size"], n + 1)
        decoder.start(1)
        prefill = decoder.prefill(0, ids[:n]).copy()
        step = decoder.decode(ids[n:]).copy()
        with torch.no_grad():
            ref = model(torch.from_numpy(ids)[None]).logits[0].numpy()
        cmp = compare(ref[n - 1:], np.stack([prefill, step[0]]))
        # random inputs on random weights: near-tied logits make top-1 agreement meaningless
        checks[f"prompt_{n}"] = check(cmp, "fp32", f"logits after a {n}-token prompt", top1=not random_weights).to_json()

    prompt = prompt[: max(1, max_context - GREEDY_STEPS)]
    steps = min(GREEDY_STEPS, max_context - len(prompt))
    ours = greedy(decoder, prompt, steps)
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=steps, min_new_tokens=steps, do_sample=False, eos_token_id=None,
                             pad_token_id=facts["eos_token_id"])[0, len(prompt):].tolist()
    same = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), len(ref))
    if same < len(ref):
        raise ValidationError(f"greedy tokens differ from transformers' generate at step {same} of {steps}:"
                              f" {ours[same]} vs {ref[same]}")
    return {"logits": checks, "greedy_tokens_identical": same, "greedy_steps": steps}


def greedy(decoder, prompt: list[int], steps: int) -> list[int]:
    """Plain argmax decoding on a KVDecoder (the export's reference loop, no sampling code involved)."""
    decoder.start(1)
    tokens = [int(decoder.prefill(0, np.asarray(prompt, np.int64)).argmax())]
    while len(tokens) < steps:
        tokens.append(int(decoder.decode(np.array([tokens[-1]]))[0].argmax()))
    return tokens
