"""Image classifiers from what ML engineers have, as a module the exporter can trace plus what the
checkpoint says about its preprocessing and labels.

    transformers directory   AutoModelForImageClassification (MobileNetV2, ResNet, ConvNeXt, ViT ...);
                             preprocessing from preprocessor_config.json, labels from config.id2label
    torchvision:NAME         torchvision.models.get_model(NAME) with a state_dict; preprocessing and
                             category names from the weights torchvision publishes for NAME
    .pt2                     an ExportedProgram written by torch.export.save
    module:Class             a class from an importable module or a .py file, plus a state_dict

Every loader returns an ImageSource; the class count comes from the module's own output.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelrt.models.checkpoints import read_checkpoint
from reelrt.runtime.errors import InputError
from reelrt.runtime.tasks.antialias import PIL_NUMBERS

# torchvision's InterpolationMode values -> the runtime's names
TORCHVISION_INTERPOLATION = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic", "lanczos": "lanczos",
                             "box": "area"}


@dataclass
class ImageSource:
    """A loaded image classifier: `module` maps (N, C, H, W) float32 pixels to (N, classes) logits."""
    module: Any
    description: str
    policy: dict | None = None         # the checkpoint's own preprocessing, when it has one
    labels: list[str] | None = None    # the checkpoint's own class names, when it has them
    input_shape: tuple[int, ...] | None = None   # (C, H, W) the module was traced with (.pt2)


def from_transformers(directory: str | os.PathLike) -> ImageSource:
    """A transformers image-classification checkpoint directory (save_pretrained output)."""
    from transformers import AutoConfig, AutoModelForImageClassification

    directory = Path(directory)
    try:
        config = AutoConfig.from_pretrained(directory)
        model = AutoModelForImageClassification.from_pretrained(directory)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{directory} is not a transformers image-classification checkpoint: "
                         f"{str(e).splitlines()[0]}") from None
    processor = directory / "preprocessor_config.json"
    if not processor.is_file():
        raise InputError(f"{directory} has no preprocessor_config.json: save the image processor beside the model"
                         " (AutoImageProcessor.from_pretrained(base).save_pretrained(DIR)), or give the"
                         " preprocessing with --size/--mean/--std/--channel-order or --preprocessing FILE")
    policy = policy_from_image_processor(json.loads(processor.read_text()), processor)
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    labels = [id2label.get(i, str(i)) for i in range(config.num_labels)]
    return ImageSource(_logits_only(model.float().eval()), f"transformers {config.model_type} ({directory.name})",
                       policy, labels)


def policy_from_image_processor(cfg: dict, where: Path | str = "preprocessor_config.json") -> dict:
    """The runtime's preprocessing policy for a transformers image processor's config.

    Supported, exactly as the processor computes them: resize of the shorter side then a centre
    crop (MobileNetV2, BiT, CLIP), ConvNeXt's crop_pct, and a plain resize to height x width (ViT).
    Anything else is refused naming the keys, rather than approximated.
    """
    size = cfg.get("size") or {}
    crop = cfg.get("crop_size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    resample = cfg.get("resample", 2)
    if resample not in PIL_NUMBERS:
        raise InputError(f"{where}: resample {resample} has no equivalent here; give --interpolation")
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    if rescale <= 0:
        raise InputError(f"{where}: rescale_factor must be positive, not {rescale}")
    policy: dict[str, Any] = {"interpolation": PIL_NUMBERS[resample], "channel_order": "RGB", "layout": "NCHW",
                              "scale": 1.0 / rescale}
    if cfg.get("do_normalize", True):
        policy["mean"], policy["std"] = list(cfg.get("image_mean", [0.5] * 3)), list(cfg.get("image_std", [0.5] * 3))
    else:
        policy["mean"], policy["std"] = [0.0] * 3, [1.0] * 3
    center_crop = cfg.get("do_center_crop", bool(crop)) and crop
    if not cfg.get("do_resize", True):
        raise InputError(f"{where}: do_resize is false, so the input size depends on each image; give --size")
    if "shortest_edge" in size and "crop_pct" in cfg:      # ConvNeXt
        edge = int(size["shortest_edge"])
        if edge < 384:
            policy.update(size=[edge, edge], resize=int(edge / cfg["crop_pct"]), crop="center")
        else:
            policy.update(size=[edge, edge], resize=None, crop="none")
    elif "shortest_edge" in size and center_crop:
        policy.update(size=[int(crop["height"]), int(crop["width"])], resize=int(size["shortest_edge"]), crop="center")
    elif "height" in size and "width" in size and not center_crop:
        policy.update(size=[int(size["height"]), int(size["width"])], resize=None, crop="none")
    else:
        raise InputError(f"{where}: size {size} with crop_size {crop or None} (do_center_crop"
                         f" {cfg.get('do_center_crop')}) is not a policy the runtime reproduces exactly (shorter"
                         " side then centre crop, or a resize to height x width); give the preprocessing with"
                         " --size/--resize/--crop or --preprocessing FILE")
    return policy


def from_torchvision(name: str, checkpoint: str | os.PathLike | None) -> ImageSource:
    """torchvision.models.get_model(name) with the state_dict at `checkpoint` (its class count from the
    checkpoint), preprocessing and category names from torchvision's published weights for `name`."""
    try:
        import torchvision
    except Exception as e:  # ImportError, or a torchvision built for another torch failing at import
        raise InputError(f"--arch torchvision:{name} needs torchvision, which does not import here"
                         f" ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); install the"
                         " torchvision release built for this torch, or use --module with the class") from None
    if name not in torchvision.models.list_models():
        raise InputError(f"torchvision has no model {name!r}; known: {', '.join(torchvision.models.list_models())}")
    from reelrt.models.cnn import head_classes

    state = read_state_dict(checkpoint) if checkpoint else None
    classes = head_classes(state) if state else None
    model = torchvision.models.get_model(name, **({"num_classes": classes} if classes else {}))
    if state:
        load_weights(model, state, checkpoint)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    t = weights.transforms()
    policy = {"size": list(_pair(t.crop_size)), "resize": int(_pair(t.resize_size)[0]), "crop": "center",
              "interpolation": TORCHVISION_INTERPOLATION.get(t.interpolation.value, "linear"), "mean": list(t.mean),
              "std": list(t.std), "scale": 255.0, "channel_order": "RGB", "layout": "NCHW"}
    categories = weights.meta.get("categories")
    labels = list(categories) if categories and (classes or len(categories)) == len(categories) else None
    return ImageSource(model.eval(), f"torchvision {name}", policy, labels)


def from_exported_program(path: str | os.PathLike) -> ImageSource:
    """An ExportedProgram saved with torch.export.save (.pt2): the module and its traced input shape."""
    import torch

    try:
        program = torch.export.load(str(path))
    except FileNotFoundError:
        raise
    except Exception as e:  # a zip that is not a program, a newer format ...
        raise InputError(f"{path} is not an ExportedProgram saved by torch.export.save ({type(e).__name__}:"
                         f" {str(e).splitlines()[0] if str(e) else ''})") from None
    inputs = [n for n in program.graph.nodes if n.op == "placeholder"
              and n.name in program.graph_signature.user_inputs]
    shape = tuple(inputs[0].meta["val"].shape) if len(inputs) == 1 and "val" in inputs[0].meta else ()
    if len(shape) != 4:
        raise InputError(f"{path}: an image classifier program takes one (N, C, H, W) input, this one takes"
                         f" {len(inputs)} input(s){' of shape ' + str(list(shape)) if shape else ''}")
    if isinstance(shape[0], int):   # a traced size, not a torch.SymInt: the program runs that batch only
        raise InputError(f"{path} was exported with a fixed batch of {shape[0]}; a bundle takes any batch: export"
                         " it with a dynamic batch dimension, torch.export.export(model, (x,), dynamic_shapes="
                         "({0: torch.export.Dim('batch')},)) with x of batch 2 or more, and save it again")
    static = [int(d) for d in shape[1:]]
    return ImageSource(_program_module(program), f"ExportedProgram {Path(path).name}", input_shape=tuple(static))


def _program_module(program):
    """The program as a module that eval() accepts (an unlifted program's module refuses eval(): it
    was traced in its mode already). The graph module is held unregistered, so eval() stops here."""
    import torch

    class Program(torch.nn.Module):
        def __init__(self, graph_module):
            super().__init__()
            self.__dict__["graph_module"] = graph_module

        def forward(self, pixels):
            return self.graph_module(pixels)

    return Program(program.module())


def from_module(spec: str, checkpoint: str | os.PathLike | None, kwargs: dict | None = None) -> ImageSource:
    """`package.module:Class` or `path/to/file.py:Class`, built with `kwargs`, weights from `checkpoint`."""
    model = build_user_module(spec, kwargs)
    if checkpoint:
        load_weights(model, read_state_dict(checkpoint), checkpoint)
    return ImageSource(model.eval(), f"{spec}")


def build_user_module(spec: str, kwargs: dict | None = None):
    """Import the class `spec` names ("module:Class" or "file.py:Class") and build it with `kwargs`."""
    import torch

    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise InputError(f"--module {spec!r}: write it as package.module:Class or path/to/file.py:Class")
    try:
        if where.endswith(".py"):
            file = Path(where)
            if not file.is_file():
                raise InputError(f"--module {spec!r}: {file} does not exist")
            module_spec = importlib.util.spec_from_file_location(f"reelrt_user_{file.stem}", file)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_spec.name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ImportError as e:
        raise InputError(f"--module {spec!r}: cannot import {where} ({e})") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise InputError(f"--module {spec!r}: {where} has no {name}")
    try:
        model = cls(**(kwargs or {}))
    except TypeError as e:
        raise InputError(f"--module {spec!r}: cannot build {name}(**{kwargs or {}}): {e}; pass its"
                         " arguments with --module-kwargs JSON") from None
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"--module {spec!r} built a {type(model).__name__}, not a torch.nn.Module")
    return model


def read_state_dict(path: str | os.PathLike) -> dict:
    """A state_dict from a .pt/.pth file (tensors only, never arbitrary pickled code) or a .safetensors
    file; a {"state_dict": ...} or {"model": ...} wrapper is unwrapped."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    hint = "save one with torch.save(model.state_dict(), PATH)"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except Exception as e:  # safetensors' own errors for a damaged header
            raise InputError(f"{path} is not a readable state_dict ({type(e).__name__}); {hint}") from None
    else:
        state = read_checkpoint(path, "state_dict", hint)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} does not hold a state_dict (a mapping of parameter names to tensors)")
    return state


def load_weights(model, state: dict, checkpoint) -> None:
    """load_state_dict, strictly; a mismatch names the first missing, unexpected or mis-shaped keys."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise InputError(f"checkpoint {checkpoint} does not fit {type(model).__name__}: "
                         f"{' '.join(lines[1:3]) if len(lines) > 1 else lines[0]}"[:600]) from None


def _pair(value) -> tuple[int, int]:
    value = list(value) if isinstance(value, (list, tuple)) else [value]
    return (int(value[0]), int(value[-1]))


def _logits_only(model):
    """A transformers classifier as a module that returns the logits tensor alone."""
    import torch

    class TransformersLogits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).logits

    return TransformersLogits(model)
