"""What a reducing gap costs in agreement with transformers (an experiment: not in the wheel).

    python bench/experiments/reducing_gap.py [--gaps none,4,2,1] [--out DIR]

For the four transformers families of the tests (tests/hf_image_models.py: MobileNetV2, ResNet,
ConvNeXt and ViT at 32x32, random weights with real BatchNorm statistics, saved with their image
processors), exports each directory, then compares transformers' processor + model with the
bundle on photographs its processor must shrink, the bundle's preprocessing exact (as exported)
and with each reducing gap. Prints, per family and gap, the share of equal top-1 answers and the
largest and mean |logit difference| as a fraction of each image's logit range.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))   # the tests' model builders

from hf_image_models import KINDS, photographs, processor_pixels, transformers_dir  # noqa: E402

from reelrt.export import image_classifier  # noqa: E402
from reelrt.runtime import load  # noqa: E402
from reelrt.runtime.tasks.image import Preprocessor  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gaps", default="none,4,2,1")
    p.add_argument("--out", help="where the directories and bundles go (default: a temporary directory)")
    args = p.parse_args(argv)
    gaps = [None if g.strip() == "none" else float(g) for g in args.gaps.split(",")]
    root = Path(args.out or tempfile.mkdtemp(prefix="reducing-gap-"))
    frames = photographs()
    print("| family | interpolation | reducing_gap | top-1 equal | max |diff| / range | mean |diff| / range |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in KINDS:
        model, processor = transformers_dir(kind, root / kind)
        clf = load(image_classifier(root / f"{kind}-bundle", checkpoint=root / kind, random_weights=True))
        with torch.no_grad():
            expected = model(pixel_values=processor_pixels(processor, frames)).logits.numpy()
        spread = expected.max(1) - expected.min(1)
        for gap in gaps:
            pre = Preprocessor({**clf.manifest.preprocessing, "reducing_gap": gap})
            ours = clf.run({clf.input_name: pre.batch(frames)})[clf.output_name]
            rel = np.abs(ours - expected).max(1) / spread
            print(f"| {kind} | {pre.interpolation} | {gap or 'exact'} |"
                  f" {(ours.argmax(1) == expected.argmax(1)).mean():.0%} | {rel.max():.2%} | {rel.mean():.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
