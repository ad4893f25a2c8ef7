"""GPT-2 generation benchmark: reelrt bundles against onnxruntime-genai, PyTorch eager, Optimum and llama.cpp.

Workload: greedy, a 32-token prompt, 128 new tokens, every system on the same weights and
threads. One timed step is one whole generation; it reports time to first token, decode
ms/token (median and p90 over its tokens) and tokens/s, and reelrt rows add the
memory-bandwidth floor: the bytes a decode step reads (the weights it streams at the bundle's
precision, and the key/value cache at the run's mean context) over the bandwidth measured in
the same run (bench/machine.py).

onnxruntime-genai runs its own loop on the very same bundle (a GPT-2 bundle is a genai model
folder) with the same threads. The other peers rebuild the bundle's weights: a checkpoint bundle
names its checkpoint directory, a random-config bundle its config and seed (models/gpt2.py makes the same weights again).
llama.cpp runs through llama-cpp-python on GGUF files written by the converter of the
llama.cpp source it was built from (REELRT_LLAMA_CPP_SRC: a directory holding
convert_hf_to_gguf.py, conversion/ and gguf-py/). `reelrt bench` runs these rows, with
cold start and peak memory from one child process per system (bench/isolated.py):

    reelrt bench bundles/gpt2 bundles/gpt2-int8 bundles/gpt2-int4 --out bench-results/gpt2
"""
from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from reelrt.bench.harness import System, percentile
from reelrt.runtime.bundle import Bundle
from reelrt.runtime.bundle.layout import GENAI_CONFIG
from reelrt.runtime.tasks.generation.config import DecoderConfig
from reelrt.runtime.bundle.cache import cache_dir

PROMPT_TOKENS = 32
NEW_TOKENS = 128
PEERS = ("onnxruntime-genai", "pytorch", "optimum", "llama.cpp")


def new_tokens(bundle: Bundle) -> int:
    """NEW_TOKENS, or fewer where the model's context cannot hold them after the prompt (the demo's
    small GPT-2 has 128 positions)."""
    return min(NEW_TOKENS, DecoderConfig.from_manifest(bundle.manifest).max_context - PROMPT_TOKENS)


def mean_context(new: int) -> int:
    """The context of the median decode step of a generation of `new` tokens after the prompt."""
    return PROMPT_TOKENS + new // 2


# ---- the contract: systems --------------------------------------------------------------------

def systems(bundles: list[Bundle], peers: set[str] | None, threads: int) -> tuple[list[System], dict[str, str]]:
    """reelrt rows for each bundle, then the peers once per distinct source of weights."""
    rows: list[System] = []
    skipped: dict[str, str] = {}
    sources: dict[str, tuple[dict, int]] = {}  # workload -> (where the peers get the weights, new tokens)
    for bundle in bundles:
        m = bundle.manifest
        workload, new = _workload(bundle), new_tokens(bundle)
        sources.setdefault(workload, (weights_source(bundle), new))
        rows.append(System(f"reelrt {m.precision}", workload, "reelrt.bench.gpt2:reelrt_generation",
                           {"bundle": str(bundle.root), "threads": threads, "new_tokens": new}, is_reelrt=True,
                           size_bytes=sum(a.size for p, a in m.artifacts.items() if p.startswith(m.model)),
                           bytes_per_token=bytes_per_token(m, mean_context(new))))
    wanted = set(PEERS) if peers is None else set(peers) & set(PEERS)
    for name in sorted(set(peers or ()) - set(PEERS)):
        skipped[name] = "not a GPT-2 peer"
    if "onnxruntime-genai" in wanted:
        reason = _missing("onnxruntime_genai")
        for bundle in bundles:
            if reason or GENAI_CONFIG not in bundle.manifest.artifacts:
                skipped["onnxruntime-genai"] = reason or f"{bundle.root} has no genai_config.json (exported before genai support)"
                continue
            rows.append(System(f"onnxruntime-genai {bundle.manifest.precision}", _workload(bundle),
                               "reelrt.bench.gpt2:genai_generation",
                               {"bundle": str(bundle.root), "threads": threads, "new_tokens": new_tokens(bundle)},
                               size_bytes=next(r.size_bytes for r in rows if r.kwargs["bundle"] == str(bundle.root))))
    for workload, (source, new) in sources.items():
        if source.get("unavailable"):
            skipped.update({p: source["unavailable"] for p in wanted})
            continue
        if "pytorch" in wanted:
            rows.append(System("pytorch eager generate", workload, "reelrt.bench.gpt2:pytorch_generation",
                               {"source": source, "threads": threads, "new_tokens": new}))
        if "optimum" in wanted:
            reason = _missing("optimum.onnxruntime")
            if reason:
                skipped["optimum"] = reason
            else:
                rows.append(System("optimum ORTModelForCausalLM fp32", workload, "reelrt.bench.gpt2:optimum_generation",
                                   {"source": source, "threads": threads, "new_tokens": new}))
        if "llama.cpp" in wanted:
            reason = _missing("llama_cpp") or _converter_missing()
            if reason:
                skipped["llama.cpp"] = reason
                continue
            for quant in ("f32", "q8_0", "q4_0"):
                try:
                    gguf = gguf_file(source, quant)
                except (RuntimeError, OSError) as e:
                    skipped["llama.cpp"] = f"GGUF conversion failed: {e}"
                    break
                rows.append(System(f"llama.cpp {quant}", workload, "reelrt.bench.gpt2:llama_generation",
                                   {"gguf": str(gguf), "threads": threads, "new_tokens": new},
                                   size_bytes=gguf.stat().st_size))
    return rows, skipped


# ---- what is timed ----------------------------------------------------------------------------

Step = Callable[[], dict]


def prompt_ids(vocab_limit: int) -> list[int]:
    """The same 32 token ids for every system (the workload's speed does not depend on the text)."""
    return [int(i) for i in np.random.default_rng(32).integers(1, vocab_limit, PROMPT_TOKENS)]


def _metrics(start: float, stamps: list[float]) -> dict:
    gaps = np.diff([stamps[0]] + stamps[1:]) * 1e3 if len(stamps) > 1 else np.zeros(1)
    ordered = sorted(gaps.tolist())
    return {"ttft_ms": (stamps[0] - start) * 1e3, "decode_ms_per_token": statistics.median(ordered),
            "decode_p90_ms": percentile(ordered, 90), "tokens_per_s": len(stamps) / (stamps[-1] - start)}


def bytes_per_token(manifest, context: int) -> int:
    """What one decode step reads from memory: the weights it streams at the bundle's precision
    (every matrix once; of the embedding tables one row, left out) as export and quantize recorded
    them, and the keys and values of `context` tokens in every layer."""
    config = DecoderConfig.from_manifest(manifest)
    weights = int(manifest.validation.get("weight_bytes_per_token", config.extra["weight_bytes_per_token"]))
    cache = next(s for s in manifest.inputs if np.dtype(s.dtype).kind == "f")  # the first past key
    return weights + 2 * config.n_layer * context * config.n_embd * np.dtype(cache.dtype).itemsize


def reelrt_generation(bundle: str, threads: int, new_tokens: int) -> Step:
    from reelrt.runtime import load
    gen = load(bundle, threads=threads, spin=True)
    ids = prompt_ids(gen.text_vocab)

    def step() -> dict:
        start = time.perf_counter()
        stamps = [time.perf_counter() for _ in gen.stream_ids(ids, new_tokens, stop_token_ids=())]
        return _metrics(start, stamps)
    return step


def genai_generation(bundle: str, threads: int, new_tokens: int) -> Step:
    """onnxruntime-genai's greedy loop on the bundle itself, its session on the same threads."""
    import json

    import onnxruntime_genai as og
    config = og.Config(bundle)
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    model = og.Model(config)
    vocab = json.loads((Path(bundle) / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    ids = prompt_ids(vocab)

    def step() -> dict:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + new_tokens, min_length=len(ids) + new_tokens, do_sample=False)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(ids)
        stamps = []
        while not generator.is_done():
            generator.generate_next_token()
            stamps.append(time.perf_counter())
        return _metrics(start, stamps)
    return step


def pytorch_generation(source: dict, threads: int, new_tokens: int) -> Step:
    import torch
    torch.set_num_threads(threads)
    model = _torch_model(source)
    return _hf_step(model, prompt_ids(source["text_vocab"]), new_tokens)


def optimum_generation(source: dict, threads: int, new_tokens: int) -> Step:
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForCausalLM
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    exported = cache_dir("bench", "optimum-" + _key(source))
    if not (exported / "config.json").is_file():
        ORTModelForCausalLM.from_pretrained(checkpoint_dir(source), export=True, use_cache=True).save_pretrained(exported)
    model = ORTModelForCausalLM.from_pretrained(exported, session_options=options, provider="CPUExecutionProvider")
    return _hf_step(model, prompt_ids(source["text_vocab"]), new_tokens)


def _hf_step(model, ids: list[int], new_tokens: int) -> Step:
    """transformers-style `generate`, its tokens timed by a streamer (put() is called once per new token)."""
    import torch

    class Stamps:
        def __init__(self):
            self.times: list[float] = []
            self.prompt_seen = False

        def put(self, value):
            if self.prompt_seen:
                self.times.append(time.perf_counter())
            self.prompt_seen = True

        def end(self):
            pass

    inputs = torch.tensor([ids])
    mask = torch.ones_like(inputs)

    def step() -> dict:
        stamps = Stamps()
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(inputs, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, pad_token_id=0, streamer=stamps)
        return _metrics(start, stamps.times)
    return step


def llama_generation(gguf: str, threads: int, new_tokens: int) -> Step:
    """llama.cpp's own decode loop step by step; greedy is an argmax over its last logits, as ours."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=PROMPT_TOKENS + new_tokens + 8, n_batch=PROMPT_TOKENS,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    vocab = llm.n_vocab()
    ids = prompt_ids(vocab)  # the GGUF vocabulary is the tokenizer's: the same ids as the other rows

    def next_token() -> int:
        return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(vocab,))))

    def step() -> dict:
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        stamps = []
        for _ in range(new_tokens):
            token = next_token()
            stamps.append(time.perf_counter())
            llm.eval([token])
        return _metrics(start, stamps)
    return step


# ---- weights for the peers ----------------------------------------------------------------

def weights_source(bundle: Bundle) -> dict:
    """Where the peers get the bundle's weights: its checkpoint directory, or its random config and seed."""
    m = bundle.manifest
    prov = m.provenance  # a quantized bundle keeps its source's provenance
    text_vocab = int(m.tokenizer.get("vocab_size", DecoderConfig.from_manifest(m).vocab_size))
    if prov.get("checkpoint"):
        if not Path(prov["checkpoint"]).is_dir():
            return {"unavailable": f"the bundle's checkpoint {prov['checkpoint']} is not on this machine"}
        return {"checkpoint": prov["checkpoint"], "text_vocab": text_vocab}
    if "random_config" not in prov:
        return {"unavailable": "the bundle records neither a checkpoint nor a random config"}
    return {"config": prov["random_config"], "seed": int(prov["seed"]), "text_vocab": text_vocab}


def _workload(bundle: Bundle) -> str:
    config = DecoderConfig.from_manifest(bundle.manifest)
    return f"gpt2 {config.n_layer}x{config.n_embd} greedy {PROMPT_TOKENS}+{new_tokens(bundle)}"


def _key(source: dict) -> str:
    """Cache key of derived peer files: the source, and for a random config the shape it names today."""
    from reelrt.models.gpt2 import CONFIGS
    shape = CONFIGS.get(source.get("config"), {})
    return hashlib.sha256(repr((sorted(source.items()), sorted(shape.items()))).encode()).hexdigest()[:16]


def _torch_model(source: dict):
    from reelrt.models import gpt2
    if "checkpoint" in source:
        return gpt2.load_checkpoint(source["checkpoint"])
    return gpt2.random_model(source["config"], seed=source["seed"])


def checkpoint_dir(source: dict) -> Path:
    """A transformers checkpoint directory holding the source's weights (written once for random configs)."""
    if "checkpoint" in source:
        return Path(source["checkpoint"])
    out = cache_dir("bench", "checkpoint-" + _key(source))
    if not (out / "config.json").is_file():
        from reelrt.models import gpt2
        gpt2.save_checkpoint(_torch_model(source), gpt2.train_tokenizer(source["text_vocab"]), out)
    return out


def gguf_file(source: dict, quant: str) -> Path:
    """The source converted to GGUF by llama.cpp's own converter (q4_0 through llama.cpp's quantizer)."""
    out = cache_dir("bench", f"gguf-{_key(source)}") / f"model-{quant}.gguf"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant == "q4_0":
        import llama_cpp
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
        params.nthread = 2
        tmp = out.with_suffix(".tmp")
        if llama_cpp.llama_model_quantize(str(gguf_file(source, "f32")).encode(), str(tmp).encode(), params) != 0:
            raise RuntimeError("llama_model_quantize failed")
        os.replace(tmp, out)
        return out
    src = Path(os.environ["REELRT_LLAMA_CPP_SRC"])
    # Our tokenizer is GPT-2's byte-level BPE; the converter only knows published tokenizers by hash.
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import conversion.base as b;"
              " b.TextModel.get_vocab_base_pre = lambda self, tokenizer: 'gpt-2';"
              " import convert_hf_to_gguf as c; sys.argv = ['convert', *sys.argv[2:]]; c.main()")
    tmp = out.with_suffix(".tmp")
    run = subprocess.run([sys.executable, "-c", script, str(src), str(checkpoint_dir(source)), "--outtype", quant,
                          "--outfile", str(tmp)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}")
    os.replace(tmp, out)
    return out


def _missing(module: str) -> str | None:
    import importlib.util
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else f"{module.split('.')[0]} is not installed"


def _converter_missing() -> str | None:
    src = os.environ.get("REELRT_LLAMA_CPP_SRC")
    if not src or not (Path(src) / "convert_hf_to_gguf.py").is_file():
        return "set REELRT_LLAMA_CPP_SRC to the llama.cpp source llama-cpp-python was built from (its GGUF converter)"
    return None
