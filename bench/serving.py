"""Serving load: K concurrent streaming clients against `reelrt serve` and `llama-server`.

Workload: each client sends `--requests` completions one after another, each a 32-token prompt
(token ids, different for every request, so no prompt cache helps) and 128 new tokens
(greedy, end-of-text ignored), streamed as server-sent events. Both servers get K slots
(`--parallel K`, `-np K`) and the same threads; sides alternate K by K (reelrt, llama-server,
reelrt, ... with the order flipped each round). Per side and K: aggregate tokens/s (all
tokens over the wall time of the round), time to first token and inter-token gaps (p50, p99
over all clients' events). In-process `TextGenerator.stream_ids` on client 0's requests,
interleaved with the sides of the first K, is the baseline the server's overhead is measured
against.

llama-server runs GGUF q4_0 made from the bundle's own source weights by the converter of the
llama.cpp source it was built from (REELRT_LLAMA_CPP_SRC) and that build's llama-quantize.

    python -m reelrt.bench.serving bundles/gpt2-int4 --llama-server build/bin/llama-server \\
        --clients 1,4,8,16 --requests 2 --threads 2 --json serving.json
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from reelrt.bench.gpt2 import PROMPT_TOKENS, gguf_file, new_tokens, weights_source
from reelrt.bench.harness import percentile
from reelrt.runtime import load, open_bundle


def prompts(client: int, count: int, vocab: int) -> list[list[int]]:
    """32 token ids per request, the same for both sides, different across requests."""
    rng = np.random.default_rng(1000 + client)
    return [[int(t) for t in rng.integers(1, vocab, PROMPT_TOKENS)] for _ in range(count)]


def one_stream(port: int, model: str, ids: list[int], new: int) -> dict:
    """One streamed completion: (send time, event times, tokens)."""
    body = json.dumps({"model": model, "prompt": ids, "max_tokens": new, "temperature": 0, "stream": True,
                       "ignore_eos": True})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    sent = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:200]!r}")
    stamps = []
    for line in response:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        data = json.loads(line[6:])
        if "error" in data:
            raise RuntimeError(str(data["error"]))
        choice = (data.get("choices") or [{}])[0]
        if "text" in choice and (choice["text"] or choice.get("finish_reason") is None):
            stamps.append(time.perf_counter())  # every token's event (llama-server sends one with "" for a
            # token it does not spell: random weights pick ids past the tokenizer's vocabulary)
    conn.close()
    return {"sent": sent, "stamps": stamps}


def run_clients(count: int, client: Callable[[int], None]) -> float:
    """client(0) .. client(count - 1), each on its own thread; seconds until the last is done."""
    threads = [threading.Thread(target=client, args=(c,)) for c in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def load_round(port: int, model: str, clients: int, requests: int, vocab: int, new: int) -> dict:
    """K clients, each sending its requests in turn; the round's figures."""
    results: list[list[dict]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def client(c: int) -> None:
        try:
            for ids in prompts(c, requests, vocab):
                results[c].append(one_stream(port, model, ids, new))
        except Exception as e:  # reported with the round, never silently dropped
            errors.append(f"{type(e).__name__}: {e}")
    wall = run_clients(clients, client)
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed: {errors[0]}")
    runs = [r for rs in results for r in rs]
    ttft = sorted((r["stamps"][0] - r["sent"]) * 1e3 for r in runs)
    gaps = sorted(g * 1e3 for r in runs for g in np.diff(r["stamps"]))
    tokens = clients * requests * new
    return {"clients": clients, "tokens_per_s": tokens / wall, "ttft_p50_ms": statistics.median(ttft),
            "ttft_p99_ms": percentile(ttft, 99), "itl_p50_ms": statistics.median(gaps),
            "itl_p99_ms": percentile(gaps, 99), "events_per_request": len(gaps) / len(runs) + 1, "wall_s": wall}


@contextmanager
def server(cmd: list[str], port: int, ready_path: str, timeout: float = 180):
    """Run a server command until the block ends, once GET ready_path answers 200."""
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: a chatty server never blocks on it
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {log.read()[-2000:]}")
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", ready_path)
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{cmd[0]} did not become ready")
                time.sleep(0.2)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def reelrt_cmd(bundle: str, port: int, clients: int, threads: int, spin: bool, prefill_chunk: int) -> list[str]:
    return [sys.executable, "-m", "reelrt", "serve", f"model={bundle}", "--port", str(port), "--parallel",
            str(clients), "--threads", str(threads), "--max-waiting", "256", "--spin" if spin else "--no-spin",
            "--prefill-chunk", str(prefill_chunk)]


def llama_cmd(binary: str, gguf: Path, port: int, clients: int, threads: int, new: int) -> list[str]:
    context = clients * (PROMPT_TOKENS + new + 16)
    return [binary, "-m", str(gguf), "--port", str(port), "--host", "127.0.0.1", "-t", str(threads), "-tb",
            str(threads), "-np", str(clients), "-cb", "-c", str(context), "--alias", "model", "--no-webui"]


def q4_0_gguf(bundle: str, quantize_binary: str) -> Path:
    """The bundle's source weights as GGUF q4_0 (llama.cpp's converter, then its llama-quantize)."""
    source = weights_source(open_bundle(bundle))
    if "unavailable" in source:
        raise RuntimeError(source["unavailable"])
    f32 = gguf_file(source, "f32")
    out = f32.with_name("model-q4_0-server.gguf")
    if not out.is_file():
        tmp = out.with_suffix(".tmp")
        subprocess.run([quantize_binary, str(f32), str(tmp), "q4_0", "2"], check=True, capture_output=True)
        os.replace(tmp, out)
    return out


def in_process(gen, requests: int, vocab: int, new: int) -> dict:
    """Client 0's requests without the server: TextGenerator.stream_ids, one after another."""
    start = time.perf_counter()
    n = sum(1 for ids in prompts(0, requests, vocab) for _ in gen.stream_ids(ids, new, stop_token_ids=()))
    return {"tokens_per_s": n / (time.perf_counter() - start)}


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle")
    p.add_argument("--llama-server", help="llama-server binary (its llama-quantize beside it); omit to skip the peer")
    p.add_argument("--clients", default="1,4,8,16")
    p.add_argument("--requests", type=int, default=2, help="requests per client per round")
    p.add_argument("--rounds", type=int, default=1, help="rounds over all K (sides alternate)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--spin", action=argparse.BooleanOptionalAction, default=True,
                   help="reelrt's idle worker threads busy-wait between steps, as llama.cpp's do (default: on)")
    p.add_argument("--prefill-chunk", type=int, default=16, help="reelrt serve --prefill-chunk (default 16)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.clients.split(",")]
    gen = load(args.bundle, threads=args.threads, spin=args.spin)  # the in-process baseline
    vocab, baseline = gen.text_vocab, []
    new = new_tokens(gen.bundle)  # 128, or what the model's context holds after the prompt
    sides = ["reelrt"]
    gguf = None
    if args.llama_server:
        gguf = q4_0_gguf(args.bundle, str(Path(args.llama_server).with_name("llama-quantize")))
        sides.append("llama-server")
    rows: dict[str, dict[int, list[dict]]] = {s: {k: [] for k in ks} for s in sides}
    for r in range(args.rounds):
        for i, k in enumerate(ks):
            order = sides if (r + i) % 2 == 0 else sides[::-1]
            if k == ks[0]:  # the in-process baseline takes its turn among the sides of the first K
                order = [*order, "in-process"] if r % 2 == 0 else ["in-process", *order]
            for side in order:
                if side == "in-process":
                    in_process(gen, 1, vocab, new)  # warm-up, as the servers get
                    baseline.append(in_process(gen, args.requests, vocab, new))
                    continue
                port = free_port()
                if side == "reelrt":
                    cmd = reelrt_cmd(args.bundle, port, k, args.threads, args.spin, args.prefill_chunk)
                    ready = "/v2/health/ready"
                else:
                    cmd, ready = llama_cmd(args.llama_server, gguf, port, k, args.threads, new), "/health"
                with server(cmd, port, ready):
                    load_round(port, "model", k, 1, vocab, new)  # warm-up
                    rows[side][k].append(load_round(port, "model", k, args.requests, vocab, new))
                    print(side, k, rows[side][k][-1], flush=True)
    report = {"bundle": args.bundle, "gguf": str(gguf) if gguf else None, "threads": args.threads,
              "requests_per_client": args.requests, "new_tokens": new, "spin": args.spin,
              "prefill_chunk": args.prefill_chunk, "in_process": _median(baseline), "load": os.getloadavg(),
              "results": {s: {str(k): _median(v) for k, v in by_k.items()} for s, by_k in rows.items()}}
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def _median(rounds: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def table(report: dict) -> str:
    lines = ["| side | K | tokens/s | TTFT p50 ms | TTFT p99 ms | inter-token p50 ms | p99 ms |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for side, by_k in report["results"].items():
        for k, r in by_k.items():
            lines.append(f"| {side} | {k} | {r['tokens_per_s']:.0f} | {r['ttft_p50_ms']:.1f} | {r['ttft_p99_ms']:.1f}"
                         f" | {r['itl_p50_ms']:.2f} | {r['itl_p99_ms']:.2f} |")
    lines.append(f"\nin-process TextGenerator.stream_ids: {report['in_process']['tokens_per_s']:.0f} tokens/s")
    return "\n".join(lines + targets(report))


def targets(report: dict) -> list[str]:
    """The serving targets, as ratios within this run: 8 streams against one, against llama-server,
    inter-token p99 against one stream's, first token against llama-server's, HTTP against in-process."""
    ours, peer = report["results"]["reelrt"], report["results"].get("llama-server", {})
    one, eight = ours.get("1"), ours.get("8")  # K as JSON keys: strings, as the report is written
    if one is None or eight is None:
        return []
    lines = ["", f"K=8 over K=1: {eight['tokens_per_s'] / one['tokens_per_s']:.2f}x aggregate tokens/s (target 2.5x)",
             f"K=8 inter-token p99 over K=1's p99: {eight['itl_p99_ms'] / one['itl_p99_ms']:.2f}x,"
             f" over K=1's p50: {eight['itl_p99_ms'] / one['itl_p50_ms']:.2f}x (target under 4x)",
             f"K=1 through HTTP over in-process: {one['tokens_per_s'] / report['in_process']['tokens_per_s']:.3f}"
             " (target within 10%)"]
    theirs = peer.get("8")
    if theirs:
        lines += [f"K=8 over llama-server K=8: {eight['tokens_per_s'] / theirs['tokens_per_s']:.2f}x (target 1.5x)",
                  f"K=8 first token, reelrt / llama-server: p50 {eight['ttft_p50_ms']:.0f} / {theirs['ttft_p50_ms']:.0f} ms,"
                  f" p99 {eight['ttft_p99_ms']:.0f} / {theirs['ttft_p99_ms']:.0f} ms (target: under llama-server's)"]
    return lines


if __name__ == "__main__":
    sys.exit(main())
