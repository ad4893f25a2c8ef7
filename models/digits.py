"""The digits CNN trained on the handwritten digits scikit-learn ships (1797 8x8 scans).

The scans become uint8 images of dark ink on light paper and go through the runtime's own
Preprocessor, so training, export validation, quantization accuracy and the runtime all
see the same tensors. The held-out split (20%, stratified, seed 0) is fixed, so every
stage reports accuracy on the same 360 images. Training takes about 15 s on one core.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from .cnn import DIGITS_PREPROCESSING, build

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train frames, train labels, test frames, test labels); frames are (N, 8, 8) uint8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    frames = (255 - np.round(data.images * (255 / 16))).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(frames, data.target.astype(np.int64), test_size=TEST_FRACTION,
                                                        random_state=SPLIT_SEED, stratify=data.target)
    return x_train, y_train, x_test, y_test


def to_tensor(frames: np.ndarray) -> np.ndarray:
    """(N, 1, 8, 8) float32 through the runtime's preprocessing."""
    from reelrt.runtime.tasks.image import Preprocessor

    return Preprocessor(DIGITS_PREPROCESSING).batch(frames)


def train(epochs: int = 20, seed: int = 0, quiet: bool = False):
    """Train the digits CNN; return (model in eval mode, held-out accuracy)."""
    import torch
    from tqdm import tqdm

    x_train, x_test, y_train, y_test = _split_tensors()
    torch.set_num_threads(1)   # tiny kernels: a second thread only adds contention
    model = build("digits", seed=seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * (len(x_train) // 64 + 1))
    generator = torch.Generator().manual_seed(seed)
    background = float(x_train.max())   # paper colour after normalisation
    for _ in tqdm(range(epochs), desc="training digits", unit="epoch", disable=quiet or None):  # None: a terminal only
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(x_train), 64):
            idx = order[start:start + 64]
            dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()  # shift by up to 1 pixel
            batch = torch.nn.functional.pad(x_train[idx], (1, 1, 1, 1), value=background)[:, :, dy:dy + 8, dx:dx + 8]
            loss = torch.nn.functional.cross_entropy(model(batch), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.inference_mode():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    return model, accuracy


def _split_tensors():
    import torch

    train_frames, train_labels, test_frames, test_labels = digits_split()
    return (torch.from_numpy(to_tensor(train_frames)), torch.from_numpy(to_tensor(test_frames)),
            torch.from_numpy(train_labels), torch.from_numpy(test_labels))


def main(args: argparse.Namespace) -> int:
    """`reelrt train digits --out FILE.pt [--epochs N]`."""
    import torch

    start = time.perf_counter()
    model, accuracy = train(args.epochs)
    torch.save({"state_dict": model.state_dict(), "arch": "digits", "heldout_accuracy": accuracy}, args.out)
    print(f"held-out accuracy {accuracy:.2%} on {TEST_FRACTION:.0%} of scikit-learn's digits "
          f"({time.perf_counter() - start:.1f} s); wrote {args.out}")
    return 0
