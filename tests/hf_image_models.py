"""transformers image classifiers as a user saves them (model + image processor, no hub), with weights that
give answers worth comparing, and the photographs that their processors must shrink.

Random weights make ImageNet-shaped networks answer nearly the same logits for every image, which would
hide any preprocessing difference; so convolutions get a realistic spread and BatchNorm layers the
statistics of real photographs (the running means and variances of a pass over them), and ConvNeXt's
layer scale starts at 1, not 1e-6.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from own_models import spread_weights

LABELS = {0: "cat", 1: "dog", 2: "car", 3: "boat", 4: "tree"}
KINDS = ("mobilenetv2", "resnet", "convnext", "vit")


def photographs() -> list[np.ndarray]:
    """BGR frames that every processor here must shrink: scikit-learn's two photographs, crops of them,
    their rotations by 90 degrees and mirror images, and copies scaled up and down (with OpenCV's
    area and cubic filters, so the scaled copies are new images, not PIL's own resamplings)."""
    import cv2
    from sklearn.datasets import load_sample_images

    out = []
    for rgb in load_sample_images().images:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        out += [bgr, bgr[40:340, 100:520], np.ascontiguousarray(np.rot90(bgr)), np.ascontiguousarray(bgr[::-1, ::-1]),
                cv2.resize(bgr, (1000, 667), interpolation=cv2.INTER_CUBIC),
                cv2.resize(bgr[50:400, 200:600], (157, 137), interpolation=cv2.INTER_AREA)]
    return out


def statistics_frames(count: int = 96) -> list[np.ndarray]:
    """Random crops of the photographs, of random sizes: the images BatchNorm statistics are taken over."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(7)
    out = []
    for i in range(count):
        photo = load_sample_images().images[i % 2]
        side = int(rng.integers(24, 300))
        y, x = (int(rng.integers(0, n - side)) for n in photo.shape[:2])
        out.append(np.ascontiguousarray(photo[y:y + side, x:x + side, ::-1]))
    return out


def _rgb(frame: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))


def processor_pixels(processor, frames: list[np.ndarray]) -> torch.Tensor:
    """transformers' own preprocessing of BGR frames (PIL images, as its pipeline hands them over)."""
    return processor(images=[_rgb(f) for f in frames], return_tensors="pt")["pixel_values"]


def real_batchnorm_statistics(model, pixels: torch.Tensor) -> None:
    """Running statistics of every BatchNorm layer set from a pass over real images (cumulative mean)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(pixel_values=pixels)
    model.eval()


def transformers_dir(kind: str, root: Path):
    """A random-init transformers classifier of `kind`, saved with its image processor (configured as the
    hub's checkpoints of that family are, at a small size) into `root`; returns (model, processor)."""
    import transformers as tf

    common = dict(num_labels=len(LABELS), id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    if kind == "mobilenetv2":      # google/mobilenet_v2_1.0_224: shorter side 256, crop 224, bilinear
        model = tf.MobileNetV2ForImageClassification(tf.MobileNetV2Config(image_size=32, depth_multiplier=0.35,
                                                                          **common))
        processor = tf.MobileNetV2ImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                                                 resample=2)
    elif kind == "resnet":         # microsoft/resnet-50: ConvNeXt's processor, crop_pct 0.875, bicubic
        model = tf.ResNetForImageClassification(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                                                layer_type="basic", **common))
        processor = tf.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875, resample=3)
    elif kind == "convnext":       # facebook/convnext-tiny-224: crop_pct 0.875, bicubic
        config = tf.ConvNextConfig(num_channels=3, patch_size=4, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                                   layer_scale_init_value=1.0, **common)
        model = tf.ConvNextForImageClassification(config)
        processor = tf.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875, resample=3)
    else:                          # google/vit-base-patch16-224: a plain resize to 224 x 224, bilinear
        model = tf.ViTForImageClassification(tf.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                                           num_hidden_layers=2, num_attention_heads=2,
                                                           intermediate_size=64, **common))
        processor = tf.ViTImageProcessor(size={"height": 32, "width": 32}, resample=2)
    if kind == "vit":   # its own init (spread everywhere, attention saturates), with a head of realistic spread
        torch.nn.init.normal_(model.classifier.weight, 0, model.config.hidden_size ** -0.5)
    else:
        spread_weights(model)
        real_batchnorm_statistics(model, processor_pixels(processor, statistics_frames()))
    model.eval().save_pretrained(root)
    processor.save_pretrained(root)
    return model, processor
