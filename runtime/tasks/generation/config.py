"""The decoder's facts, typed and read once from a GPT-2 bundle's manifest.

Export writes them into `manifest.extra` (and derives genai_config.json from the same object),
the runtime sizes its cache and logits from them, and quantize, compile and the benches read
them through `DecoderConfig.from_manifest` instead of indexing the dict: a missing or mistyped
fact is one BundleError here, never a KeyError somewhere later.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from reelrt.runtime.bundle.manifest import Manifest
from reelrt.runtime.errors import BundleError
from reelrt.runtime.tasks.generation.defaults import GENERATION

SIZES = ("n_layer", "n_head", "head_dim", "max_context", "vocab_size")


@dataclass(frozen=True)
class DecoderConfig:
    """The shape of a GPT-2 decoder graph and its key/value cache."""
    n_layer: int
    n_head: int
    head_dim: int
    max_context: int
    vocab_size: int                    # the model's logits (may exceed the tokenizer's vocabulary)
    n_embd: int = 0
    eos_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # facts the runtime does not use

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> DecoderConfig:
        """From manifest.extra (or export's facts before the write); BundleError naming a bad fact."""
        values: dict[str, Any] = {}
        for key in SIZES:
            value = facts.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BundleError(f"not a usable GPT-2 bundle: manifest.extra.{key} must be a positive int,"
                                  f" not {value!r}")
            values[key] = value
        n_embd = facts.get("n_embd", values["n_head"] * values["head_dim"])
        eos = facts.get("eos_token_id")
        if eos is not None and (isinstance(eos, bool) or not isinstance(eos, int) or not 0 <= eos < values["vocab_size"]):
            raise BundleError(f"not a usable GPT-2 bundle: manifest.extra.eos_token_id {eos!r} is not an id"
                              f" in [0, {values['vocab_size']})")
        known = {*SIZES, "n_embd", "eos_token_id"}
        return cls(**values, n_embd=int(n_embd), eos_token_id=eos,
                   extra={k: v for k, v in facts.items() if k not in known})

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> DecoderConfig:
        return cls.from_facts(manifest.extra)

    def to_facts(self) -> dict[str, Any]:
        """What manifest.extra holds (the inverse of from_facts)."""
        facts = asdict(self)
        return {**{k: v for k, v in facts.items() if k != "extra"}, **self.extra}


def generation_defaults(manifest: Manifest) -> dict[str, Any]:
    """The bundle's generation defaults over reelrt's own (greedy, 64 new tokens)."""
    return {**GENERATION, **manifest.generation}
