"""How much disk `pip install reelrt` takes: the base install a game client ships, and each extra.

    python -m reelrt.bench.install_size [--extras text,images,signing] [--torch] [--json size.json]

Builds the wheel, then for each variant makes a fresh virtual environment, installs the wheel
(with the extra) under constraints.txt and reports what the install added to site-packages:
the apparent size of every file, bytecode that pip compiles included, minus what a fresh venv
already holds (pip, setuptools), with the largest distributions. `--torch` installs torch
alone the same way, for the yardstick the target is set against (a quarter of torch's size).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 190

# Run inside the venv: bytes per installed distribution, from its own file list.
_BY_DISTRIBUTION = """
import json, importlib.metadata as md
sizes = {}
for d in md.distributions():
    total = 0
    for f in d.files or ():
        p = d.locate_file(f)
        try:
            total += p.stat().st_size
        except OSError:
            pass
    sizes[d.metadata['Name']] = total
print(json.dumps(sizes))
"""


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = out.glob("reelrt-*.whl")
    return wheel


def fresh_venv(path: Path) -> Path:
    """A new venv at `path`; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def site_packages_bytes(python: Path) -> int:
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return sum(p.stat().st_size for p in Path(site).rglob("*") if p.is_file() and not p.is_symlink())


def measure(requirement: str, workdir: Path) -> dict:
    """Install `requirement` in a fresh venv; what it added, in bytes, by distribution."""
    python = fresh_venv(workdir)
    before = site_packages_bytes(python)
    fresh = set(json.loads(subprocess.run([str(python), "-c", _BY_DISTRIBUTION], check=True, capture_output=True,
                                          text=True).stdout))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), requirement],
                   check=True, capture_output=True)
    after = site_packages_bytes(python)
    sizes = json.loads(subprocess.run([str(python), "-c", _BY_DISTRIBUTION], check=True, capture_output=True,
                                      text=True).stdout)
    added = {name: size for name, size in sizes.items() if name not in fresh}
    has_cv2 = subprocess.run([str(python), "-c", "import cv2"], capture_output=True).returncode == 0
    return {"requirement": requirement, "bytes": after - before, "opencv": has_cv2,
            "distributions": dict(sorted(added.items(), key=lambda kv: -kv[1]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reelrt.bench.install_size", description=__doc__.split("\n\n")[0])
    p.add_argument("--extras", default="text,images,signing", help="extras to measure on top of the base, comma-separated")
    p.add_argument("--torch", action="store_true", help="also measure torch alone (the target's yardstick)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reelrt-size-") as tmp:
        wheel = build_wheel(Path(tmp) / "wheel")
        variants = {"base": str(wheel)}
        variants.update({extra: f"reelrt[{extra}] @ {wheel.as_uri()}" for extra in filter(None, args.extras.split(","))})
        if args.torch:
            variants["torch alone"] = "torch"
        results = {name: measure(req, Path(tmp) / name.replace(" ", "-")) for name, req in variants.items()}
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0 if results["base"]["bytes"] < TARGET_MB * 1e6 else 1


def table(results: dict) -> str:
    lines = ["| install | MB added | OpenCV | largest distributions (MB) |", "| --- | ---: | --- | --- |"]
    for name, r in results.items():
        top = ", ".join(f"{d} {b / 1e6:.1f}" for d, b in list(r["distributions"].items())[:6])
        lines.append(f"| {name} | {r['bytes'] / 1e6:.1f} | {'yes' if r['opencv'] else 'no'} | {top} |")
    base = results["base"]["bytes"] / 1e6
    lines.append(f"\nbase: {base:.1f} MB against the target of {TARGET_MB} MB"
                 f" ({'met' if base < TARGET_MB else 'not met'})")
    if "torch alone" in results:
        lines.append(f"torch alone: {results['torch alone']['bytes'] / 1e6:.1f} MB;"
                     f" base / torch = {base / (results['torch alone']['bytes'] / 1e6):.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
