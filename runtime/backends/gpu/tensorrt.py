"""TensorRT: build a plan from a bundle's ONNX (`reelrt compile --target tensorrt`) and run it.

Precision travels in the graph, not in builder flags: the network is created STRONGLY_TYPED,
so an fp16 graph runs in fp16 and int8/int4 run from the Q/DQ nodes quantize/ wrote
(TensorRT 10.1 deprecated the implicit-int8 calibrators, TensorRT 11 removed them with the
FP16/INT8 flags). Dynamic axes get the optimisation profiles of gpu_profiles; the build
reuses a timing cache kept per TensorRT version and GPU in the runtime's cache directory;
the plan is stored under the bundle's engines/ keyed as engines.py describes.

The backend deserialises a matching plan, allocates one device buffer per input and output
once (sized for the largest shape any profile allows), keeps one execution context per
profile bound to those buffers, and queues copies and runs on a single CUDA stream; it
uses cuda-bindings for device memory, never torch.

UNVERIFIED: nothing in this module that calls TensorRT or CUDA has ever run on real
TensorRT or a GPU (none was available to its authors); it was written against the
TensorRT 10 Python API docs. The pieces around it (engine key, lookup, storage, profile
choice, parity check) are unit-tested on the CPU.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from reelrt.runtime.backends.gpu import cuda
from reelrt.runtime.bundle import Bundle, open_bundle
from reelrt.runtime.bundle.cache import write_atomic
from reelrt.runtime.backends.gpu.engines import DeviceFacts, engine_fields, find_plan, store_plan, timing_cache_path
from reelrt.runtime.errors import BackendUnavailableError, BundleError, InputError, ReelrtError
from reelrt.runtime.backends.gpu.profiles import Profile, choose_profile, derive_profiles
from reelrt.runtime.reference import at_batch, reference_feeds
from reelrt.runtime.validation import check, compare



def import_tensorrt():
    """The tensorrt module; BackendUnavailableError when it is not installed."""
    try:
        import tensorrt
    except ImportError as e:
        raise BackendUnavailableError(f"TensorRT is not installed (it needs an NVIDIA GPU; pip install tensorrt): {e}") from None
    return tensorrt


def device_facts(trt) -> DeviceFacts:
    """This machine's TensorRT version and GPU 0, as the engine key needs them."""
    name, capability = cuda.device_properties(0)
    return DeviceFacts(str(trt.__version__), name, capability)


def compile_bundle(bundle_path: str | os.PathLike, out: str | os.PathLike | None = None) -> int:
    """`reelrt compile BUNDLE --target tensorrt [--out DIR]`: build, check and store a plan for this GPU
    (in place, or in a copy at `out`).

    UNVERIFIED: never run on real TensorRT; written against the TensorRT 10 API docs."""
    bundle = open_bundle(bundle_path, verify="always")
    reference_feeds(bundle)  # refuse a bundle with nothing to check a plan on before a build of minutes
    trt = import_tensorrt()
    facts = device_facts(trt)
    profiles = derive_profiles(bundle.manifest)
    out = out or bundle_path
    existing, _ = find_plan(bundle, facts)
    if existing is not None and Path(out).absolute() == Path(bundle_path).absolute():
        print(f"{bundle_path}: plan {existing.name} already matches {facts.gpu} and TensorRT {facts.tensorrt}")
        return 0
    print(f"building a TensorRT {facts.tensorrt} plan for {facts.gpu} (sm {facts.compute_capability}),"
          f" {bundle.manifest.precision}, profiles {[p.name for p in profiles]}; this takes minutes ...", flush=True)
    start = time.perf_counter()
    plan = build_plan(trt, bundle.model_path, profiles, timing_cache_path(facts))
    seconds = time.perf_counter() - start
    from reelrt.runtime.backends import open_onnxruntime
    reference = open_onnxruntime(bundle, bundle.manifest.model, "cpu", None, {})
    worst = check_parity(TensorRTBackend(plan, facts.gpu), reference, bundle, profiles)
    written = store_plan(bundle, out, engine_fields(bundle, facts, profiles), plan, seconds)
    print(f"wrote {len(plan) / 1e6:.1f} MB plan in {seconds:.0f} s to {written}/engines/;"
          f" worst relative difference to ONNX Runtime CPU {worst:.2e}")
    return 0


def build_plan(trt, onnx_path: Path, profiles: list[Profile], cache_path: Path) -> bytes:
    """Parse the ONNX file into a strongly typed network and build a serialized engine.

    UNVERIFIED: never run on real TensorRT; written against the TensorRT 10 API docs."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from a file, so external weight data resolves
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BundleError(f"TensorRT cannot parse {onnx_path.name} (ONNX Runtime contrib ops such as"
                          f" GroupQueryAttention or MatMulNBits have no TensorRT equivalent): {'; '.join(errors[:5])}")
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if any(t.is_shape_tensor for t in inputs):
        raise BundleError(f"{onnx_path.name} has shape-tensor inputs, which reelrt's TensorRT profiles do not cover")
    config = builder.create_builder_config()
    for profile in profiles:
        if set(profile.shapes) != {t.name for t in inputs}:
            raise BundleError(f"the manifest's inputs {sorted(profile.shapes)} differ from the ONNX graph's"
                              f" {sorted(t.name for t in inputs)}")
        built = builder.create_optimization_profile()
        for name, (low, opt, high) in profile.shapes.items():
            built.set_shape(name, low, opt, high)
        config.add_optimization_profile(built)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ReelrtError(f"TensorRT failed to build a plan for {onnx_path.name} (see its log above)")
    write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


class TensorRTBackend:
    """A deserialised plan with its device buffers allocated once and one stream.

    UNVERIFIED: never run on real TensorRT; written against the TensorRT 10 API docs."""

    def __init__(self, plan: bytes, gpu: str):
        trt = import_tensorrt()
        self.name = f"tensorrt:{gpu}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BackendUnavailableError("TensorRT refused the plan (built by another TensorRT or for another GPU)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if n not in self.input_names]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.stream = cuda.Stream()
        self._profiles = [{n: tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(n, i)) for n in self.input_names}
                          for i in range(self.engine.num_optimization_profiles)]
        sizes = dict.fromkeys(names, 0)
        self._contexts = []
        for index, ranges in enumerate(self._profiles):
            context = self.engine.create_execution_context()
            context.set_optimization_profile_async(index, self.stream.ptr)
            for name in self.input_names:
                context.set_input_shape(name, ranges[name][2])
            for name in names:
                shape = ranges[name][2] if name in ranges else tuple(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise BackendUnavailableError(f"output {name!r} has a data-dependent shape, which this backend does not support")
                sizes[name] = max(sizes[name], int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize)
            self._contexts.append(context)
        self._buffers = {n: cuda.DeviceBuffer(sizes[n]) for n in names}
        for context in self._contexts:
            for name in names:
                context.set_tensor_address(name, self._buffers[name].ptr)
        self.stream.synchronize()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            context = self._contexts[choose_profile(self._profiles, {n: feeds[n].shape for n in self.input_names})]
        except ValueError as e:
            raise InputError(str(e)) from None
        staged = []  # host arrays must outlive the asynchronous copies
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            context.set_input_shape(name, array.shape)
            self._buffers[name].upload(array, self.stream)
            staged.append(array)
        if not context.execute_async_v3(self.stream.ptr):
            raise ReelrtError("TensorRT failed to enqueue the plan")
        outputs = []
        for name in self.output_names:
            array = np.empty(tuple(context.get_tensor_shape(name)), self._dtypes[name])
            self._buffers[name].download(array, self.stream)
            outputs.append(array)
        self.stream.synchronize()
        return outputs


def open_tensorrt(bundle: Bundle) -> TensorRTBackend:
    """The bundle's plan for this GPU and TensorRT; BackendUnavailableError when there is none."""
    trt = import_tensorrt()
    facts = device_facts(trt)
    plan, why = find_plan(bundle, facts)
    if plan is None:
        raise BackendUnavailableError(why)
    backend = TensorRTBackend(plan.read_bytes(), facts.gpu)
    if set(backend.input_names) != {s.name for s in bundle.manifest.inputs}:
        raise BackendUnavailableError(f"plan {plan.name} takes inputs {backend.input_names}, not the manifest's")
    return backend


def check_parity(candidate, reference, bundle: Bundle, profiles: list[Profile]) -> float:
    """Run both backends on the bundle's reference inputs at every profile's opt batch (their rows
    repeated to that many, runtime/reference.py); raise
    ValidationError beyond the precision's tolerance.

    Held to the shared validation policy; an fp32 graph is held to tf32's tolerance (TensorRT
    uses TF32 by default). Returns the worst relative difference over all outputs."""
    manifest = bundle.manifest
    precision = "tf32" if manifest.precision == "fp32" else manifest.precision
    feeds = reference_feeds(bundle)
    worst = 0.0
    for profile in profiles:
        at_profile = at_batch(feeds, next(iter(profile.shapes.values()))[1][0])
        got = dict(zip(candidate.output_names, candidate.run(at_profile)))
        for name, want in zip(reference.output_names, reference.run(at_profile)):
            cmp = check(compare(want, got[name]), precision, f"the TensorRT plan against ONNX Runtime on output"
                        f" {name!r} at profile {profile.name!r} (not stored)", top1=False)
            worst = max(worst, cmp.relative_diff)
    return worst
