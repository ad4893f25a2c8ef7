"""Text generation: the GPT-2 decoder loop (generator.py), the key/value-cache decoder over the
ONNX graph (decoder.py), sampling on the last logits (sampling.py) and incremental
detokenization (detokenize.py)."""
from __future__ import annotations

from reelrt.runtime.tasks.generation.generator import TextGenerator

__all__ = ["TextGenerator"]
