"""A benchmark run written three ways: JSON for programs, Markdown for people, a PNG plot.

The JSON (results.json) is read by other tools, so it stays flat and stable:

    {
      "schema": "reelrt-bench/1",
      "date": "2026-11-22T15:04:05+00:00",          # UTC, when the run ended
      "command": "reelrt bench bundles/a --peers pytorch",
      "settings": {"threads": 2, "warmup": 3, "iterations": 50, "seconds": null},
      "machine": {"cpu": ..., "physical_cores": ..., "flags": [...], "memory_bytes": ...,
                  "bandwidth_gb_s": ..., "versions": {...}},     # see machine.describe
      "baselines": {"<workload>": "<system>"},      # PyTorch eager when measured
      "fastest_peers": {"<workload>": "<system>"},
      "rows": [{
        "workload": "mobilenetv2 batch 1", "system": "reelrt int8", "is_reelrt": true,
        "peer": null,                               # or "pytorch", "ort-naive", ...
        "batch": 1, "size_bytes": 3500000,
        "latency_ms": {"median": .., "p90": .., "p99": .., "mean": .., "n": ..},
        "throughput_per_s": ..,                     # batch * 1000 / median latency
        "metrics": {"ttft_ms": {<same keys as latency_ms>}, "decode_ms_per_token": {..}},
        "tokens_per_s": ..,                         # 1000 / median decode ms/token, else null
        "bytes_per_token": ..,                      # bytes a decode step reads (weights streamed + KV cache)
        "bandwidth_floor_ms_per_token": ..,         # bytes_per_token / this run's bandwidth, else null
        "peak_rss_bytes": .., "cold_start_ms": ..,  # from a child process; null if not measured
        "isolated_error": null,                     # why the child run failed, if it did
        "speedup_vs_baseline": ..,                  # baseline median / this median (>1 = faster)
        "speedup_vs_fastest_peer": ..
      }],
      "skipped": [{"family": "gpt2", "peer": "llama.cpp", "reason": "not installed"}],
      "errors": [{"family": "cnn", "system": "openvino", "error": "RuntimeError: ..."}]
    }

Speed-ups compare rows of the same run and the same workload only; measurements from
different runs never meet in one ratio.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import Result, Stats, baselines, fastest_peers, ratios
from .isolated import Isolated

SCHEMA = "reelrt-bench/1"


@dataclass
class Run:
    """Everything one benchmark run found, in the order it was measured."""
    command: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    isolated: dict[tuple[str, str], Isolated] = field(default_factory=dict)   # (workload, system) -> child run
    skipped: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def to_json(run: Run) -> dict[str, Any]:
    base, fastest = baselines(run.results), fastest_peers(run.results)
    vs_base, vs_fastest = ratios(run.results, base), ratios(run.results, fastest)
    bandwidth = run.machine.get("bandwidth_gb_s")
    rows = []
    for r in run.results:
        s = r.system
        key = f"{s.workload} / {s.name}"
        child = run.isolated.get((s.workload, s.name), Isolated())
        decode = r.metrics.get("decode_ms_per_token")
        rows.append({
            "workload": s.workload, "system": s.name, "is_reelrt": s.is_reelrt, "peer": s.peer_name,
            "batch": s.batch, "size_bytes": s.size_bytes,
            "latency_ms": _stats(r.latency_ms),
            "throughput_per_s": s.batch * 1e3 / r.latency_ms.median if r.latency_ms.median > 0 else None,
            "metrics": {k: _stats(v) for k, v in r.metrics.items()},
            "tokens_per_s": 1e3 / decode.median if decode and decode.median > 0 else None,
            "bytes_per_token": s.bytes_per_token,
            "bandwidth_floor_ms_per_token": (s.bytes_per_token / (bandwidth * 1e9) * 1e3
                                             if decode and s.bytes_per_token and bandwidth else None),
            "peak_rss_bytes": child.peak_rss_bytes, "cold_start_ms": child.cold_start_ms,
            "isolated_error": child.error,
            "speedup_vs_baseline": 1 / vs_base[key] if vs_base.get(key) else None,
            "speedup_vs_fastest_peer": 1 / vs_fastest[key] if vs_fastest.get(key) else None,
        })
    return {"schema": SCHEMA, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": run.command, "settings": run.settings, "machine": run.machine,
            "baselines": base, "fastest_peers": fastest, "rows": rows,
            "skipped": run.skipped, "errors": run.errors}


def _stats(s: Stats) -> dict[str, float]:
    return {"median": s.median, "p90": s.p90, "p99": s.p99, "mean": s.mean, "n": s.n}


def markdown(data: dict[str, Any], header: bool = True) -> str:
    """The JSON report as Markdown: the machine, then one table per workload."""
    lines = []
    if header:
        m = data["machine"]
        lines += ["# reelrt bench", "",
                  f"- command: `{data['command']}`",
                  f"- date: {data['date']}",
                  f"- machine: {machine_line(m)}",
                  f"- settings: " + ", ".join(f"{k} {v}" for k, v in data["settings"].items() if v is not None), ""]
    for workload in dict.fromkeys(r["workload"] for r in data["rows"]):
        rows = [r for r in data["rows"] if r["workload"] == workload]
        generation = any(r["metrics"].get("decode_ms_per_token") for r in rows)
        baseline, fastest = data["baselines"].get(workload), data["fastest_peers"].get(workload)
        columns = ["system", "median ms", "p90 ms", "p99 ms", "per s"]
        if generation:
            columns += ["TTFT ms", "decode ms/token", "tokens/s", "floor ms/token"]
        columns += ["peak RSS MB", "cold start ms", "size MB", f"vs {baseline}"]
        if fastest and fastest != baseline:
            columns.append("vs fastest peer")
        lines += [f"## {workload}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        for r in rows:
            lat = r["latency_ms"]
            cells = [f"**{r['system']}**" if r["is_reelrt"] else r["system"],
                     _num(lat["median"]), _num(lat["p90"]), _num(lat["p99"]), _num(r["throughput_per_s"])]
            if generation:
                ttft, decode = r["metrics"].get("ttft_ms"), r["metrics"].get("decode_ms_per_token")
                cells += [_num(ttft and ttft["median"]), _num(decode and decode["median"]), _num(r["tokens_per_s"]),
                          _num(r.get("bandwidth_floor_ms_per_token"))]
            cells += [_num(r["peak_rss_bytes"] and r["peak_rss_bytes"] / 1e6), _num(r["cold_start_ms"]),
                      _num(r["size_bytes"] and r["size_bytes"] / 1e6), _ratio(r["speedup_vs_baseline"])]
            if fastest and fastest != baseline:
                cells.append(_ratio(r["speedup_vs_fastest_peer"]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if data["rows"]:
        lines += ["Speed-ups are median-latency ratios within one run (>1x = faster than the row named);"
                  " reelrt rows in bold.", ""]
    notes = [f"- skipped {s['family']} {s['peer']}: {s['reason']}" for s in data["skipped"]]
    notes += [f"- error {e['family']} {e['system']}: {e['error']}" for e in data["errors"]]
    notes += [f"- {r['workload']} / {r['system']}: memory and cold start not measured: {r['isolated_error']}"
              for r in data["rows"] if r["isolated_error"]]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines)


def machine_line(m: dict[str, Any]) -> str:
    parts = [str(m.get("cpu")), f"{m.get('physical_cores')} cores", f"{m.get('threads')} threads used"]
    if m.get("flags"):
        parts.append(" ".join(m["flags"]))
    if m.get("memory_bytes"):
        parts.append(f"{m['memory_bytes'] / 2**30:.0f} GiB")
    if m.get("bandwidth_gb_s"):
        parts.append(f"triad bandwidth {m['bandwidth_gb_s']:.1f} GB/s")
    return ", ".join(parts)


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}x"


def plot(data: dict[str, Any], path: Path) -> Path:
    """Median latency per system (whisker to p90), one panel per workload."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in data["rows"]))
    heights = [max(1, sum(r["workload"] == w for r in data["rows"])) for w in workloads] or [1]
    fig, axes = plt.subplots(len(heights), 1, figsize=(8, 1.2 + 0.45 * sum(heights) + 0.6 * len(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, workload in zip(axes[:, 0], workloads):
        rows = [r for r in data["rows"] if r["workload"] == workload]
        medians = [r["latency_ms"]["median"] for r in rows]
        whiskers = [[0] * len(rows), [r["latency_ms"]["p90"] - r["latency_ms"]["median"] for r in rows]]
        colors = ["tab:blue" if r["is_reelrt"] else "tab:gray" for r in rows]
        y = range(len(rows))
        ax.barh(y, medians, xerr=whiskers, color=colors, capsize=3)
        ax.set_yticks(list(y), [r["system"] for r in rows])
        ax.invert_yaxis()
        ax.set_title(workload, fontsize=10, loc="left")
        ax.set_xlabel("latency ms (median, whisker to p90)")
        ax.margins(x=0.15)
        for i, r in enumerate(rows):
            if r["speedup_vs_baseline"] is not None:
                ax.annotate(f"{r['speedup_vs_baseline']:.2f}x", (r["latency_ms"]["p90"], i), xytext=(6, 0),
                            textcoords="offset points", va="center", fontsize=8)
    if not workloads:
        axes[0, 0].text(0.5, 0.5, "nothing was measured", ha="center", va="center")
    fig.suptitle(f"reelrt bench: {data['machine'].get('cpu')}, {data['machine'].get('threads')} threads "
                 f"(blue: reelrt; x: speed-up vs baseline)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(run: Run, out: Path, extra_json: Path | None = None) -> dict[str, Path]:
    """Write results.json, results.md and results.png under `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = to_json(run)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "plot": out / "results.png"}
    text = json.dumps(data, indent=2)
    paths["json"].write_text(text + "\n")
    if extra_json:
        extra_json.parent.mkdir(parents=True, exist_ok=True)
        extra_json.write_text(text + "\n")
    paths["markdown"].write_text(markdown(data))
    plot(data, paths["plot"])
    return paths
