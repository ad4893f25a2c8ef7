"""Regenerate fortunes.csv: labelled short texts for the LSTM demo, tests and accuracy figures.

Source: Debian's `fortunes` package (bookworm, 1:1.99.1-7.3), whose quotes are filed by
category in /usr/share/games/fortunes/<category>, one quote per `%`-separated record. The
package is not installed on CI machines, so the CSV is committed; this script documents
(and repeats) how it was made:

    python models/data/make_fortunes_csv.py            # apt-get download + dpkg -x into a temp dir
    python models/data/make_fortunes_csv.py --root DIR  # DIR holds the category files

Five well-separated categories; quotes over 400 characters are dropped, whitespace is
collapsed, and at most 300 quotes per category are kept (seeded sample), so the file
stays small (about 130 KB).
"""
from __future__ import annotations

import argparse
import csv
import random
import subprocess
import tempfile
from pathlib import Path

CATEGORIES = ("food", "linux", "love", "sports", "startrek")
MAX_CHARS = 400
PER_CATEGORY = 300
OUT = Path(__file__).with_name("fortunes.csv")


def read_quotes(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    quotes = (" ".join(q.split()) for q in text.split("\n%\n"))
    return [q for q in quotes if q and len(q) <= MAX_CHARS]


def extract_package(workdir: Path) -> Path:
    """Download the Debian package with apt and unpack it without installing it."""
    subprocess.run(["apt-get", "download", "fortunes"], cwd=workdir, check=True)
    deb = next(workdir.glob("fortunes_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "root")], check=True)
    return workdir / "root/usr/share/games/fortunes"


def write_csv(root: Path, out: Path = OUT) -> int:
    rng = random.Random(0)
    rows = []
    for category in CATEGORIES:
        quotes = sorted(set(read_quotes(root / category)))
        rng.shuffle(quotes)
        rows += [(q, category) for q in quotes[:PER_CATEGORY]]
    rng.shuffle(rows)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="directory holding the fortunes category files")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.root:
        print(f"wrote {write_csv(args.root, args.out)} rows to {args.out}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"wrote {write_csv(extract_package(Path(tmp)), args.out)} rows to {args.out}")


if __name__ == "__main__":
    main()
