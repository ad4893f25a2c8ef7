"""GPT-2 weight-only quantization: MatMulNBits for every weight matrix, the LM head included.

The export wrote the LM head as its own [n_embd, vocab] MatMul (not a transposed view of the
tied embedding), so it quantizes like any other matrix, and decoding never dequantizes a
38.6M-element weight per token (what plain `quantize_dynamic` did, at 41 ms/token). The token
embedding, which a step only gathers a row of, becomes a GatherBlockQuantized table of the same
width (ONNX Runtime's quantizer writes the 4-bit one; the 8-bit one is written here), which keeps
the bundle and its resident memory small.

Each pass validates the quantized graph against its fp32 source on real text and reports quality:
perplexity of both on held-out text (Python's pydoc topics the training script never saw) and
next-token top-1 agreement.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from reelrt.runtime.validation import QualityGate, compare, weights_are_random
from reelrt.quantize.derive import derive_bundle
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.errors import InputError

EVAL_TOKENS = 2048          # held-out tokens scored for perplexity and agreement (trained models)
EVAL_TOKENS_RANDOM = 256    # random weights: the comparison only guards against broken graphs
DEFAULT_ACCURACY_LEVEL = 4  # int8 activations: the fastest MatMulNBits kernels on AVX-512 VNNI
# Blocks of 128 read a quarter fewer scale bytes than blocks of 32: GPT-2 small int4 decodes ~20%
# faster here, with a held-out perplexity change of -0.15% against +0.27% for 32 (trained model).
DEFAULT_BLOCK_SIZE = 128
# fp32 perplexity over this share of the vocabulary on held-out English text: untrained weights
RANDOM_PERPLEXITY_SHARE = 0.25


def quantize_int8(src: Bundle, out: str | os.PathLike, *, block_size: int | None = None,
                  accuracy_level: int | None = None, accept_quality_loss: bool = False) -> Path:
    """int8 weight-only (MatMulNBits) of a GPT-2 bundle into `out`."""
    return _quantize(src, out, 8, block_size, accuracy_level, accept_quality_loss)


def quantize_int4(src: Bundle, out: str | os.PathLike, *, block_size: int | None = None,
                  accuracy_level: int | None = None, accept_quality_loss: bool = False) -> Path:
    """int4 weight-only (MatMulNBits) of a GPT-2 bundle into `out`."""
    return _quantize(src, out, 4, block_size, accuracy_level, accept_quality_loss)


def _quantize(src: Bundle, out: str | os.PathLike, bits: int, block_size: int | None, accuracy_level: int | None,
              accept_quality_loss: bool) -> Path:
    block_size = block_size or DEFAULT_BLOCK_SIZE
    accuracy_level = DEFAULT_ACCURACY_LEVEL if accuracy_level is None else accuracy_level
    gate = QualityGate(accept_quality_loss)
    if block_size < 16 or block_size & (block_size - 1):
        raise InputError(f"--block-size must be a power of two of at least 16, not {block_size}")
    settings = {"bits": bits, "block_size": block_size, "accuracy_level": accuracy_level, "symmetric": True,
                "embedding": f"GatherBlockQuantized {bits}-bit"}

    def model_pass(src_model: Path, dst_model: Path) -> dict:
        write_quantized(src_model, dst_model, bits, block_size, accuracy_level)
        return validate(src, dst_model, f"int{bits}", gate)

    return derive_bundle(src, out, f"int{bits}", model_pass, settings, gate=gate)


def write_quantized(src_model: Path, dst_model: Path, bits: int, block_size: int, accuracy_level: int) -> dict[str, int]:
    """Quantize every MatMul weight (and for int4 the token embedding); return the fused-op counts."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from reelrt.export.gpt2_graph import fused_counts, save
    # it logs every node at INFO and warns that it raises the opset to 21 for int4 (as intended)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.ERROR)
    ops = ("MatMul", "Gather") if bits == 4 else ("MatMul",)
    axes = (("MatMul", 0), ("Gather", 1))
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level,
                                          quant_format=QuantFormat.QOperator, op_types_to_quantize=ops,
                                          quant_axes=axes, bits=bits)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src_model)), bits=bits, block_size=block_size, is_symmetric=True,
                                     accuracy_level=accuracy_level, nodes_to_exclude=["pos_emb/Gather"],
                                     op_types_to_quantize=ops, quant_axes=axes, algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    if bits == 8:
        quantize_embedding_int8(model, block_size)
    save(model, dst_model)
    return fused_counts(model)


def quantize_embedding_int8(model, block_size: int) -> None:
    """Replace the token-embedding Gather with an 8-bit GatherBlockQuantized (symmetric blocks
    along the embedding axis, stored as uint8 around a zero point of 128)."""
    from onnx import helper, numpy_helper
    graph = model.graph
    node = next(n for n in graph.node if n.name == "tok_emb/Gather")
    index = next(i for i, t in enumerate(graph.initializer) if t.name == node.input[0])
    table = numpy_helper.to_array(graph.initializer[index]).astype(np.float32)
    vocab, width = table.shape
    block_size = math.gcd(width, block_size)  # a narrow model gets smaller blocks for its table
    if block_size < 16:
        raise InputError(f"the embedding width {width} has no power-of-two block of at least 16")
    blocks = table.reshape(vocab, width // block_size, block_size)
    scales = np.maximum(np.abs(blocks).max(-1), 1e-12) / 127
    data = (np.clip(np.round(blocks / scales[..., None]), -127, 127) + 128).astype(np.uint8).reshape(vocab, width)
    del graph.initializer[index]
    graph.initializer.extend([numpy_helper.from_array(data, "wte_q8"),
                              numpy_helper.from_array(scales.astype(np.float32), "wte_q8_scales"),
                              numpy_helper.from_array(np.full(scales.shape, 128, np.uint8), "wte_q8_zero_points")])
    replacement = helper.make_node("GatherBlockQuantized", ["wte_q8", node.input[1], "wte_q8_scales", "wte_q8_zero_points"],
                                   list(node.output), name="tok_emb/GatherBlockQuantized", domain="com.microsoft",
                                   bits=8, block_size=block_size, gather_axis=0, quantize_axis=1)
    position = list(graph.node).index(node)
    graph.node.remove(node)
    graph.node.insert(position, replacement)


def validate(src: Bundle, dst_model: Path, precision: str, gate: QualityGate) -> dict:
    """Compare the quantized decoder with the fp32 one on held-out text; raise ValidationError out of tolerance."""
    import onnx

    from reelrt.export.gpt2 import open_decoder
    from reelrt.export.gpt2_graph import fused_counts, streamed_weight_bytes
    from reelrt.models.gpt2 import training_text
    from reelrt.runtime.tasks.tokenizer import read_tokenizer
    from reelrt.runtime.tasks.generation.config import DecoderConfig
    facts = src.manifest.extra
    context = DecoderConfig.from_manifest(src.manifest).max_context
    declared = weights_are_random(src.manifest)
    tokenizer = read_tokenizer(src)
    ids = tokenizer.encode(training_text("heldout")).ids[:EVAL_TOKENS_RANDOM if declared else EVAL_TOKENS]
    reference, targets = teacher_forced_logits(open_decoder(src.model_path, facts), ids, context)
    candidate, _ = teacher_forced_logits(open_decoder(dst_model, facts), ids, context)
    quality = {"heldout_tokens": len(targets), "perplexity_fp32": perplexity(reference, targets),
               f"perplexity_{precision}": perplexity(candidate, targets)}
    # Untrained weights are recognised as well as declared: their perplexity on English text is of the
    # order of the vocabulary (no trained model comes near), and their next-token logits are near-tied.
    recognised = quality["perplexity_fp32"] >= RANDOM_PERPLEXITY_SHARE * tokenizer.get_vocab_size()
    random_weights = declared or recognised
    cmp = gate.check(compare(reference, candidate), precision, f"{precision} against fp32 on held-out text",
                     top1=not random_weights)
    quality["perplexity_change"] = round(quality[f"perplexity_{precision}"] / quality["perplexity_fp32"] - 1, 5)
    quality["meaningful"] = not random_weights  # random weights: near-tied logits, quality says nothing
    quality["random_weights"] = "declared" if declared else "recognised (perplexity near the vocabulary size)" \
        if recognised else False
    graph = onnx.load(str(dst_model))
    return {"against_fp32": cmp.to_json(), "quality": quality, "fused_ops": fused_counts(graph),
            "weight_bytes_per_token": streamed_weight_bytes(graph)}


def teacher_forced_logits(decoder, ids: list[int], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Next-token logits and their targets over `ids`, in windows of the model's context, one
    decode step per token: the same cache path generation takes."""
    rows, targets = [], []
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window]
        if len(chunk) < 2:
            break
        decoder.start(1)
        rows.append(decoder.prefill(0, np.asarray(chunk[:1], np.int64)).copy())
        for token in chunk[1:-1]:
            rows.append(decoder.decode(np.array([token], np.int64))[0].copy())
        targets.extend(chunk[1:])
    return np.stack(rows), np.asarray(targets)


def perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return round(math.exp(-float(log_probs[np.arange(len(targets)), targets].mean())), 4)
