"""Two graph changes that could make a batched decode step cheaper, timed against the int4 bundle
(an experiment: not in the wheel; neither change was kept, bench/RESULTS.md "Serving" says why).

    python bench/experiments/batched_decode.py FP32_BUNDLE INT4_BUNDLE [--rows 1,8] [--context 96]

- float16 cache: the int4 graph with its keys and values stored as float16 (a Cast before and
  after each GroupQueryAttention): half the bytes a step reads from the cache.
- int8 activations: the fp32 graph's MatMuls as MatMulInteger over int8 weights (per column) and
  uint8 activations quantized per row (so a row's answer does not depend on its neighbours), for
  ONNX Runtime's u8s8 GEMM, which tiles over rows where MatMulNBits runs row by row.

Each graph runs a decode step over `--rows` rows holding `--context` tokens, variants interleaved
round by round; prints the median step in ms.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from reelrt.runtime import open_bundle


def float16_cache(model: onnx.ModelProto) -> onnx.ModelProto:
    nodes = []
    for n in model.graph.node:
        if n.op_type == "GroupQueryAttention":
            qkv, out = n.input[0], n.output[0]
            nodes.append(helper.make_node("Cast", [qkv], [qkv + ".f16"], to=TensorProto.FLOAT16))
            n.input[0], n.output[0] = qkv + ".f16", out + ".f16"
            nodes += [n, helper.make_node("Cast", [out + ".f16"], [out], to=TensorProto.FLOAT)]
        else:
            nodes.append(n)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    for v in [*model.graph.input, *model.graph.output]:
        if v.name.startswith(("past_key_values", "present")):
            v.type.tensor_type.elem_type = TensorProto.FLOAT16
    return model


def int8_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    weights = {i.name: i for i in g.initializer}
    added = [numpy_helper.from_array(a, name) for name, a in (
        ("q.axes", np.array([-1])), ("q.inv127", np.array(1 / 127, np.float32)), ("q.eps", np.array(1e-12, np.float32)),
        ("q.128", np.array(128, np.float32)), ("q.zp", np.array(128, np.uint8)))]
    nodes = []
    for n in g.node:
        if n.op_type != "MatMul" or n.input[1] not in weights:
            nodes.append(n)
            continue
        w = numpy_helper.to_array(weights.pop(n.input[1])).astype(np.float32)  # [K, N]
        scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127
        added += [numpy_helper.from_array(np.clip(np.round(w / scale), -127, 127).astype(np.int8), n.input[1] + ".q"),
                  numpy_helper.from_array(scale.astype(np.float32), n.input[1] + ".s")]
        a, y = n.input[0], n.output[0]
        nodes += [  # per row: scale = max|a| / 127, a_u8 = round(a / scale) + 128
            helper.make_node("Abs", [a], [y + ".abs"]),
            helper.make_node("ReduceMax", [y + ".abs", "q.axes"], [y + ".max"], keepdims=1),
            helper.make_node("Max", [y + ".max", "q.eps"], [y + ".max1"]),
            helper.make_node("Mul", [y + ".max1", "q.inv127"], [y + ".sa"]),
            helper.make_node("Mul", [y + ".sa", "q.128"], [y + ".off"]),
            helper.make_node("Add", [a, y + ".off"], [y + ".shifted"]),
            helper.make_node("QuantizeLinear", [y + ".shifted", y + ".sa"], [y + ".aq"], axis=-1, block_size=w.shape[0],
                             output_dtype=TensorProto.UINT8),
            helper.make_node("MatMulInteger", [y + ".aq", n.input[1] + ".q", "q.zp"], [y + ".i32"]),
            helper.make_node("Cast", [y + ".i32"], [y + ".f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [y + ".f", y + ".sa"], [y + ".fa"]),
            helper.make_node("Mul", [y + ".fa", n.input[1] + ".s"], [y])]
    g.ClearField("node")
    g.node.extend(nodes)
    kept = list(weights.values())
    g.ClearField("initializer")
    g.initializer.extend(kept + added)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 21  # QuantizeLinear's blocked form: one scale per row
    model.ir_version = 10
    return model


class Step:
    """One decode step of a graph over `rows` rows of `context` tokens, bound once."""

    def __init__(self, path: Path, rows: int, context: int, threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: i for i in self.session.get_inputs()}
        cache = feeds["past_key_values.0.key"]
        dtype = np.float16 if cache.type == "tensor(float16)" else np.float32
        width = cache.shape[2]
        lengths = np.full(rows, context)
        self.binding = self.session.io_binding()
        self.keep = [np.ones((rows, 1), np.int64), (np.arange(width)[None] <= lengths[:, None]).astype(np.int64),
                     lengths[:, None].astype(np.int64)]
        for name, array in zip(("input_ids", "attention_mask", "position_ids"), self.keep):
            self.binding.bind_cpu_input(name, array)
        rng = np.random.default_rng(0)
        for name in feeds:
            if name.startswith("past_key_values"):
                buffer = (rng.random((rows, *cache.shape[1:]), np.float32) - 0.5).astype(dtype)
                value = ort.OrtValue.ortvalue_from_numpy(buffer)
                self.keep.append((buffer, value))
                self.binding.bind_ortvalue_input(name, value)
                self.binding.bind_ortvalue_output(name.replace("past_key_values", "present"), value)
        self.binding.bind_output("logits")

    def ms(self, steps: int) -> float:
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            self.session.run_with_iobinding(self.binding)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("fp32_bundle")
    p.add_argument("int4_bundle")
    p.add_argument("--rows", default="1,8")
    p.add_argument("--context", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    fp32, int4 = open_bundle(args.fp32_bundle), open_bundle(args.int4_bundle)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"int4 (the bundle)": int4.path(int4.manifest.model)}
        for name, source, change in (("int4, float16 cache", int4, float16_cache),
                                     ("int8 weights, int8 activations per row", fp32, int8_activations)):
            out = Path(tmp) / name.replace(" ", "_").replace(",", "") / "model.onnx"
            out.parent.mkdir()
            onnx.save_model(change(onnx.load(str(source.path(source.manifest.model)))), str(out),
                            save_as_external_data=True, location="model.onnx.data")
            graphs[name] = out
        for rows in (int(r) for r in args.rows.split(",")):
            steps = {name: Step(path, rows, args.context, args.threads) for name, path in graphs.items()}
            timed: dict[str, list[float]] = {name: [] for name in steps}
            for r in range(args.rounds):
                for name in (list(steps) if r % 2 == 0 else list(steps)[::-1]):
                    steps[name].ms(3)
                    timed[name].append(steps[name].ms(20))
            for name, ms in timed.items():
                print(f"{rows} rows, {args.context} tokens each: {name:40s} {statistics.median(ms):7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
