"""The GPT-2 decoder written directly as an ONNX graph of ONNX Runtime's fused operators.

One graph serves prefill and decode. Per layer: one MatMul for the packed Q/K/V,
GroupQueryAttention (num_heads == kv_num_heads, i.e. plain multi-head attention) reading and
writing a key/value cache that is one buffer of the maximum context (past and present bound
to the same memory), SkipLayerNormalization folding each residual add, bias and layer norm
into one kernel, FastGelu (GPT-2's tanh GELU) with its bias. Only the last position reaches
the final layer norm and the LM head, a separate [n_embd, vocab] copy of the tied embedding
so that quantize/ can turn it into a weight-only quantized MatMul while the embedding stays
a gather table.

The inputs and outputs are onnxruntime-genai's decoder conventions, so that genai (C, C#, Java,
Python) drives the same file as reelrt's own loop:

Inputs   input_ids int64 [batch, sequence], position_ids int64 [batch, sequence],
         attention_mask int64 [batch, total_sequence_length] (1 for every token in the cache
         after this step, left-aligned: row r holds ones in its first length_r positions),
         past_key_values.<i>.key / .value float32 [batch, n_head, max_context, head_dim]
Outputs  logits float32 [batch, 1, vocab] (last position), present.<i>.key / .value (the same
         buffers as the past ones: GroupQueryAttention writes the new position in place)

GroupQueryAttention's seqlens_k (tokens in the cache minus one, per row) and
total_sequence_length (the mask's width) are derived inside the graph from attention_mask, as
onnxruntime-genai's model builder does: ReduceSum - 1 and Shape.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from reelrt.runtime.tasks.generation.decoder import KINDS, PAST, PRESENT

MS = "com.microsoft"
FUSED_OPS = ("GroupQueryAttention", "SkipLayerNormalization", "FastGelu", "MatMulNBits", "GatherBlockQuantized")


def expected_fused_counts(n_layer: int) -> dict[str, int]:
    """What a correct fp32 graph holds: one attention and GELU per layer; a skip layer norm for the
    embedding sum, after each attention, between layers and at the end."""
    return {"GroupQueryAttention": n_layer, "SkipLayerNormalization": 2 * n_layer + 1, "FastGelu": n_layer}


def fused_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts = {op: 0 for op in FUSED_OPS}
    for node in model.graph.node:
        if node.domain == MS and node.op_type in counts:
            counts[node.op_type] += 1
    return {k: v for k, v in counts.items() if v}


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write the graph with its weights in one external file beside it (model.onnx.data).

    ONNX Runtime memory-maps external weights instead of copying them out of a parsed protobuf,
    which takes a copy of the whole model off the peak resident memory of every load (for int4
    GPT-2 small, 250 MB -> 190 MB), and it lifts protobuf's 2 GB limit for gpt2-medium and up.
    """
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)


def streamed_weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of weights one decode step reads: every initializer except the embedding tables, of
    which a step gathers one row (the numerator of the memory-bandwidth floor)."""
    total = 0
    for init in model.graph.initializer:
        if not init.name.startswith(("wte", "wpe")):
            total += len(init.raw_data) if init.HasField("raw_data") else onnx.numpy_helper.to_array(init).nbytes
    return total


def build_decoder(weights: dict[str, np.ndarray], n_layer: int, n_head: int, eps: float, max_context: int) -> onnx.ModelProto:
    """The decoder graph from a transformers GPT2LMHeadModel state dict (as float32 numpy arrays)."""
    wte = weights["transformer.wte.weight"]
    vocab, n_embd = wte.shape
    head_dim = n_embd // n_head
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs) -> None:
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0] + "/" + op, domain=domain, **attrs))

    def w(key: str) -> np.ndarray:
        return weights[key].astype(np.float32)

    # GroupQueryAttention's lengths, from the mask: seqlens_k = sum(mask) - 1, total = mask width
    node("ReduceSum", ["attention_mask", const("mask.axes", np.array([1]))], ["mask.sum"], keepdims=0)
    node("Sub", ["mask.sum", const("mask.one", np.array(1, np.int64))], ["mask.seqlens"])
    node("Cast", ["mask.seqlens"], ["seqlens_k"], to=TensorProto.INT32)
    node("Shape", ["attention_mask"], ["mask.shape"])
    node("Gather", ["mask.shape", const("mask.width_index", np.array(1, np.int64))], ["mask.width"], axis=0)
    node("Cast", ["mask.width"], ["total_sequence_length"], to=TensorProto.INT32)

    node("Gather", [const("wte", w("transformer.wte.weight")), "input_ids"], ["tok_emb"])
    node("Gather", [const("wpe", w("transformer.wpe.weight")[:max_context]), "position_ids"], ["pos_emb"])
    ln, residual = "tok_emb", "pos_emb"  # the first skip layer norm adds the two embeddings
    pending_bias = None
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        # ln_1(residual stream), which also returns the updated residual stream
        skip_inputs = [ln, residual, const(f"h{i}.ln_1.g", w(p + "ln_1.weight")), const(f"h{i}.ln_1.b", w(p + "ln_1.bias"))]
        node("SkipLayerNormalization", skip_inputs + ([pending_bias] if pending_bias else []),
             [f"h{i}.ln_1", "", "", f"h{i}.res_attn"], MS, epsilon=eps)
        node("MatMul", [f"h{i}.ln_1", const(f"h{i}.attn.qkv.w", w(p + "attn.c_attn.weight"))], [f"h{i}.qkv_mm"])
        node("Add", [f"h{i}.qkv_mm", const(f"h{i}.attn.qkv.b", w(p + "attn.c_attn.bias"))], [f"h{i}.qkv"])
        past = [PAST.format(layer=i, kind=k) for k in KINDS]
        present = [PRESENT.format(layer=i, kind=k) for k in KINDS]
        node("GroupQueryAttention", [f"h{i}.qkv", "", "", *past, "seqlens_k", "total_sequence_length"],
             [f"h{i}.attn", *present], MS, num_heads=n_head, kv_num_heads=n_head)
        node("MatMul", [f"h{i}.attn", const(f"h{i}.attn.proj.w", w(p + "attn.c_proj.weight"))], [f"h{i}.attn_out"])
        node("SkipLayerNormalization", [f"h{i}.attn_out", f"h{i}.res_attn", const(f"h{i}.ln_2.g", w(p + "ln_2.weight")),
                                        const(f"h{i}.ln_2.b", w(p + "ln_2.bias")),
                                        const(f"h{i}.attn.proj.b", w(p + "attn.c_proj.bias"))],
             [f"h{i}.ln_2", "", "", f"h{i}.res_mlp"], MS, epsilon=eps)
        node("MatMul", [f"h{i}.ln_2", const(f"h{i}.mlp.fc.w", w(p + "mlp.c_fc.weight"))], [f"h{i}.fc"])
        node("FastGelu", [f"h{i}.fc", const(f"h{i}.mlp.fc.b", w(p + "mlp.c_fc.bias"))], [f"h{i}.gelu"], MS)
        node("MatMul", [f"h{i}.gelu", const(f"h{i}.mlp.proj.w", w(p + "mlp.c_proj.weight"))], [f"h{i}.mlp_out"])
        ln, residual, pending_bias = f"h{i}.mlp_out", f"h{i}.res_mlp", const(f"h{i}.mlp.proj.b", w(p + "mlp.c_proj.bias"))

    # only the last position goes on: final layer norm, LM head
    starts, ends, axes = const("last.starts", np.array([-1])), const("last.ends", np.array([np.iinfo(np.int64).max])), const("last.axes", np.array([1]))
    node("Slice", [ln, starts, ends, axes], ["last.mlp_out"])
    node("Slice", [residual, starts, ends, axes], ["last.residual"])
    node("SkipLayerNormalization", ["last.mlp_out", "last.residual", const("ln_f.g", w("transformer.ln_f.weight")),
                                    const("ln_f.b", w("transformer.ln_f.bias")), pending_bias],
         ["ln_f", "", "", ""], MS, epsilon=eps)
    node("MatMul", ["ln_f", const("lm_head.w", w("transformer.wte.weight").T)], ["logits"])

    cache = ["batch", n_head, max_context, head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total_sequence_length"]),
              helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, vocab])]
    for i in range(n_layer):
        for kind in KINDS:
            inputs.append(helper.make_tensor_value_info(PAST.format(layer=i, kind=kind), TensorProto.FLOAT, cache))
            outputs.append(helper.make_tensor_value_info(PRESENT.format(layer=i, kind=kind), TensorProto.FLOAT, cache))
    graph = helper.make_graph(nodes, "gpt2_decoder", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)],
                              producer_name="reelrt")
    model.ir_version = 9
    return model
