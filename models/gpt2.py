"""GPT-2 checkpoints: load a transformers-format directory, or make a random one from a named config.

Random-weight models serve tests and benchmarks (speed does not depend on the weights).
The real GPT-2 vocabulary is not available offline, so a model without tokenizer files
gets a byte-level BPE tokenizer trained here on Python's own pydoc topics text; its
vocabulary may be smaller than the model's, and the runtime then never samples the ids
the tokenizer cannot spell (as models with a padded vocabulary do).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from reelrt.runtime.errors import InputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

# name -> GPT2Config keyword arguments (n_positions is the largest context of the model)
CONFIGS: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=50257, n_positions=1024),
    "distilgpt2": dict(n_layer=6, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024),
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, n_positions=256),
}
EOS_TOKEN = "<|endoftext|>"
# what the runtime does when a checkpoint says nothing: greedy, 64 new tokens
DEFAULT_GENERATION = {"max_new_tokens": 64, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
NO_TOKENIZER = ("{path} has no tokenizer (tokenizer.json, or vocab.json + merges.txt): save the tokenizer of the"
                " model it was trained or fine-tuned from into it, e.g. in Python"
                " AutoTokenizer.from_pretrained(BASE).save_pretrained({path!r}), or copy those files there;"
                " a model trained with its own tokenizer needs that tokenizer's tokenizer.json")


def training_text(split: str = "train") -> str:
    """Python's pydoc topics: real English prose that ships with every Python, no download.
    Every tenth topic (in name order) is held out for perplexity ("heldout"); "all" joins both."""
    from pydoc_data.topics import topics
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be 'train', 'heldout' or 'all', not {split!r}")
    names = sorted(topics)
    keep = {"train": lambda i: i % 10 != 0, "heldout": lambda i: i % 10 == 0, "all": lambda i: True}[split]
    return "\n\n".join(topics[k] for i, k in enumerate(names) if keep(i))


def train_tokenizer(vocab_size: int, text: str | None = None) -> "Tokenizer":
    """A GPT-2-style byte-level BPE tokenizer (end-of-text token at id 0) trained on local text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=max(vocab_size, 257), special_tokens=[EOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text or training_text("train")], trainer)
    return tok


def random_model(name: str, seed: int = 0, initializer_range: float | None = None) -> "GPT2LMHeadModel":
    """A GPT-2 of a named shape with random weights (tied embeddings, as every GPT-2)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    if name not in CONFIGS:
        raise InputError(f"unknown GPT-2 config {name!r}; choose one of {sorted(CONFIGS)}")
    extra = {"initializer_range": initializer_range} if initializer_range else {}
    config = GPT2Config(**CONFIGS[name], bos_token_id=0, eos_token_id=0, **extra)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def load_checkpoint(path: str | Path) -> "GPT2LMHeadModel":
    """A GPT-2 checkpoint directory in transformers format (config.json + weights)."""
    from transformers import GPT2LMHeadModel
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"{path} is not a transformers checkpoint directory (no config.json)")
    model = GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager")
    if model.config.model_type != "gpt2":
        raise InputError(f"{path} holds a {model.config.model_type!r} model, not GPT-2")
    return model.float().eval()


def checkpoint_tokenizer(path: str | Path) -> "Tokenizer | None":
    """The fast tokenizer of a checkpoint directory (tokenizer.json, or GPT-2's vocab.json + merges.txt)."""
    from tokenizers import Tokenizer
    path = Path(path)
    if (path / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        from transformers import GPT2TokenizerFast
        return GPT2TokenizerFast.from_pretrained(path).backend_tokenizer
    return None


def checkpoint_chat_template(path: str | Path | None) -> str | None:
    """The chat template a checkpoint's tokenizer_config.json holds (its "default" one where it
    names several), or None."""
    import json
    config = Path(path) / "tokenizer_config.json" if path is not None else None
    if config is None or not config.is_file():
        return None
    template = json.loads(config.read_text()).get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def checkpoint_generation(path: str | Path | None, config, tokenizer: "Tokenizer") -> tuple[list[int], dict]:
    """The end-of-text ids and the manifest's generation defaults of a checkpoint directory.

    generation_config.json comes first (transformers' own defaults for sampling where it samples:
    temperature 1, top-k 50, top-p 1), then config.json's eos_token_id, then the tokenizer's
    <|endoftext|>; without a generation config decoding is greedy, 64 new tokens.
    """
    import json

    generation = dict(DEFAULT_GENERATION)
    file = Path(path) / "generation_config.json" if path is not None else None
    gen = {}
    if file is not None and file.is_file():
        try:
            gen = json.loads(file.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{file} is not JSON: {e}") from None
        if gen.get("do_sample"):
            generation.update(temperature=float(gen.get("temperature", 1.0)), top_k=int(gen.get("top_k", 50)),
                              top_p=float(gen.get("top_p", 1.0)))
        if gen.get("repetition_penalty") is not None:
            generation["repetition_penalty"] = float(gen["repetition_penalty"])
        if gen.get("max_new_tokens"):
            generation["max_new_tokens"] = int(gen["max_new_tokens"])
    eos = gen.get("eos_token_id", getattr(config, "eos_token_id", None))
    if eos is None and tokenizer.token_to_id(EOS_TOKEN) is not None:
        eos = tokenizer.token_to_id(EOS_TOKEN)
    eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [] if eos is None else [eos])]
    if any(not 0 <= e < config.vocab_size for e in eos_ids):
        raise InputError(f"{path}: eos_token_id {eos} lies outside the model's {config.vocab_size} tokens")
    return eos_ids, generation


def save_checkpoint(model: "GPT2LMHeadModel", tokenizer: "Tokenizer", out: str | Path) -> Path:
    """Write a transformers checkpoint directory with its tokenizer, loadable by transformers and Optimum."""
    from transformers import PreTrainedTokenizerFast
    out = Path(out)
    model.config.n_ctx = model.config.n_positions  # llama.cpp's GGUF converter reads n_ctx
    model.save_pretrained(out)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN,
                            unk_token=EOS_TOKEN).save_pretrained(out)
    return out
