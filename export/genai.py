"""The files that make a GPT-2 bundle an onnxruntime-genai model folder as well.

onnxruntime-genai (C, C++, C#, Java, Python; NuGet and Maven packages) opens a folder holding
genai_config.json, the decoder it names and the tokenizer files its tokenizer reads
(tokenizer.json and tokenizer_config.json). The decoder graph already takes genai's input and
output names (export/gpt2_graph.py); this module writes the rest from the bundle's facts and
its generation defaults, so `og.Model(bundle_dir)` runs the same file reelrt runs.
"""
from __future__ import annotations

import json
from pathlib import Path

from reelrt.runtime.bundle.layout import GENAI_CONFIG, MODEL, TOKENIZER_CONFIG
from reelrt.runtime.tasks.generation.config import DecoderConfig
from reelrt.runtime.tasks.generation.decoder import PAST, PRESENT


def genai_config(config: DecoderConfig, generation: dict, model_file: str = MODEL) -> dict:
    """genai_config.json derived from the bundle's decoder config (manifest.extra) and generation defaults.

    The key/value cache is one buffer of max_context shared by past and present, as reelrt
    binds it; genai's max_length counts prompt and new tokens together, so it is the context.
    A temperature of 0 (reelrt's greedy default) is genai's do_sample false; a top_k of 0 (no
    limit) is the whole vocabulary.
    """
    eos = config.eos_token_id
    temperature = float(generation.get("temperature", 0.0))
    top_k = int(generation.get("top_k", 0)) or config.vocab_size
    kv = lambda template, kind: template.format(layer="%d", kind=kind)
    return {
        "model": {
            "type": "decoder",  # genai's "gpt2" is the legacy combined-cache layout (past_%d)
            "bos_token_id": eos,
            "eos_token_id": eos,
            "pad_token_id": eos,
            "context_length": config.max_context,
            "vocab_size": config.vocab_size,
            "decoder": {
                "filename": model_file,
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "head_size": config.head_dim,
                "hidden_size": config.n_embd,
                "num_attention_heads": config.n_head,
                "num_key_value_heads": config.n_head,
                "num_hidden_layers": config.n_layer,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids",
                           "past_key_names": kv(PAST, "key"), "past_value_names": kv(PAST, "value")},
                "outputs": {"logits": "logits",
                            "present_key_names": kv(PRESENT, "key"), "present_value_names": kv(PRESENT, "value")},
            },
        },
        "search": {
            "do_sample": temperature > 0,
            "temperature": temperature if temperature > 0 else 1.0,
            "top_k": top_k,
            "top_p": float(generation.get("top_p", 1.0)),
            "repetition_penalty": float(generation.get("repetition_penalty", 1.0)),
            "max_length": config.max_context,
            "min_length": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": True,
            "early_stopping": True,
            "length_penalty": 1.0,
            "diversity_penalty": 0.0,
            "no_repeat_ngram_size": 0,
        },
    }


def tokenizer_config(eos_token: str, max_context: int, chat_template: str) -> dict:
    """tokenizer_config.json beside tokenizer.json: genai's tokenizer takes the class (and its
    apply_chat_template the template) from it."""
    return {"tokenizer_class": "GPT2Tokenizer", "bos_token": eos_token, "eos_token": eos_token,
            "unk_token": eos_token, "add_bos_token": False, "add_prefix_space": False,
            "model_max_length": max_context, "clean_up_tokenization_spaces": False, "chat_template": chat_template}


def write_genai_files(directory: Path, config: DecoderConfig, generation: dict, eos_token: str,
                      chat_template: str) -> None:
    """Write genai_config.json and tokenizer_config.json into a bundle being built."""
    (directory / GENAI_CONFIG).write_text(json.dumps(genai_config(config, generation), indent=2) + "\n")
    tokenizer = tokenizer_config(eos_token, config.max_context, chat_template)
    (directory / TOKENIZER_CONFIG).write_text(json.dumps(tokenizer, indent=2) + "\n")
