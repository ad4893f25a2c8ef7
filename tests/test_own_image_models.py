"""Bring your own image classifier: transformers directories, a torchvision-style state_dict, a .pt2
program and module:Class files go export -> int8 and fp16 -> load(), and answer as the user's own
module does on real frames; every bad module or checkpoint is one clear line and exit code 2."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_image_models import KINDS, LABELS, photographs, processor_pixels, transformers_dir
from own_models import GrayCNN, LeNet, spread_weights
from reelrt.cli import main
from reelrt.export import image_classifier
from reelrt.export.cnn import photo_frames
from reelrt.runtime import load, open_bundle
from reelrt.runtime.tasks.image import Preprocessor
from reelrt.runtime.validation import check, compare

TESTS = Path(__file__).parent


def frames(offsets=((0, 0), (150, 100), (187, 340))) -> list[np.ndarray]:
    """Real photographs: scikit-learn's two, mirrored, cropped at several places (not the exact frames
    the bundle's reference set holds)."""
    return [p[y:y + 240, x:x + 300] for p in photo_frames() for y, x in offsets]


def calibration_frames(tmp_path: Path) -> Path:
    """Other crops of the photographs, as the frames a deployment would calibrate int8 on."""
    path = tmp_path / "calibration.npy"
    np.save(path, np.stack(frames(offsets=[(y, x) for y in (10, 70, 130, 180) for x in (40, 200, 330)])))
    return path


def user_logits(module, bundle: Path, images: list[np.ndarray]) -> np.ndarray:
    """The user's own module on the frames, preprocessed as the bundle says."""
    pixels = Preprocessor(open_bundle(bundle).manifest.preprocessing).batch(images)
    with torch.inference_mode():
        return module(torch.from_numpy(pixels)).float().numpy()


def quantized(bundle: Path, tmp_path: Path) -> dict[str, Path]:
    out = {}
    for precision, options in (("int8", ["--calibration", str(calibration_frames(tmp_path))]), ("fp16", [])):
        out[precision] = tmp_path / f"{bundle.name}-{precision}"
        assert main(["quantize", str(bundle), "--precision", precision, *options, "--out", str(out[precision])]) == 0
    return out


def answers_match(module, bundle: Path, tmp_path: Path, images: list[np.ndarray]) -> None:
    """fp32, int8 and fp16 bundles answer as the user's module within each precision's tolerance."""
    expected = user_logits(module, bundle, images)
    check(compare(expected, load(bundle).logits(images)), "fp32", "fp32 bundle vs the user's module", top1=False)
    for precision, path in quantized(bundle, tmp_path).items():
        m = open_bundle(path).manifest
        assert m.precision == precision and m.validation["quality_gate"]["passed"]
        check(compare(expected, load(path).logits(images)), precision, f"{precision} vs the user's module", top1=False)


# ---- transformers directories -----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_transformers_directory_matches_its_own_processor_and_model(kind, tmp_path):
    """On photographs the processor must shrink (crops, rotations and scalings of scikit-learn's two),
    the bundle answers as transformers' processor + model: the same top-1 on every one, logits within
    1% of their range (the resize is PIL's arithmetic, so the pixels are equal)."""
    model, processor = transformers_dir(kind, tmp_path / kind)
    bundle = tmp_path / f"{kind}-bundle"
    assert main(["export", "image-classifier", "--checkpoint", str(tmp_path / kind), "--random-weights",
                 "--out", str(bundle)]) == 0
    m = open_bundle(bundle).manifest
    assert m.labels == list(LABELS.values()) and m.provenance["random_weights"] is True
    assert m.preprocessing["channel_order"] == "RGB" and m.preprocessing["size"] == [32, 32]
    assert m.preprocessing["interpolation"] == ("pil-bicubic" if kind in ("resnet", "convnext") else "pil-bilinear")
    clf = load(bundle)
    photos = photographs()
    with torch.no_grad():
        expected = model(pixel_values=processor_pixels(processor, photos)).logits.numpy()
    ours = clf.logits(photos)
    spread = expected.max(1) - expected.min(1)
    assert (spread > 0.1).all()     # answers that differ from image to image, so the comparison means something
    assert (ours.argmax(1) == expected.argmax(1)).all()
    assert (np.abs(ours - expected).max(1) / spread).max() < 0.01
    probs = clf.classify(photos, top_k=len(LABELS))
    np.testing.assert_allclose([[dict(p)[LABELS[i]] for i in range(len(LABELS))] for p in probs],
                               torch.softmax(torch.from_numpy(expected), -1).numpy(), atol=1e-4)
    if kind in ("resnet", "vit"):    # and the quantized bundles answer as the user's model does
        answers_match(lambda x: model(pixel_values=x).logits, bundle, tmp_path, frames())


def test_processor_configs_map_onto_the_runtime_policy():
    from reelrt.export.image_sources import policy_from_image_processor
    from reelrt.runtime import InputError

    base = {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225], "resample": 3}
    convnext = policy_from_image_processor({**base, "size": {"shortest_edge": 224}, "crop_pct": 0.875})
    assert (convnext["size"], convnext["resize"], convnext["crop"], convnext["interpolation"]) == \
        ([224, 224], 256, "center", "pil-bicubic")
    assert policy_from_image_processor({**base, "size": {"shortest_edge": 384}, "crop_pct": 0.875})["crop"] == "none"
    assert policy_from_image_processor({**base, "do_normalize": False, "size": {"height": 8, "width": 9}})["mean"] == [0] * 3
    with pytest.raises(InputError, match="not a policy the runtime reproduces"):   # DeiT: resize 256x256, crop 224
        policy_from_image_processor({**base, "size": {"height": 256, "width": 256}, "do_center_crop": True,
                                     "crop_size": {"height": 224, "width": 224}})
    with pytest.raises(InputError, match="do_resize is false"):
        policy_from_image_processor({**base, "do_resize": False})


# ---- torchvision ------------------------------------------------------------------------------

def test_torchvision_style_state_dict_with_its_own_class_count(tmp_path):
    """models/cnn.py's ResNet-18 has torchvision's layers and parameter names, so a state_dict fine-tuned
    on 7 classes in torchvision loads as it would there; the class count comes from the checkpoint."""
    from reelrt.models.cnn import ResNet18

    module = spread_weights(ResNet18(num_classes=7))
    torch.save(module.state_dict(), tmp_path / "w.pth")
    (tmp_path / "labels.txt").write_text("\n".join(f"genre{i}" for i in range(7)) + "\n")
    bundle = tmp_path / "resnet"
    assert main(["export", "cnn", "--arch", "resnet18", "--checkpoint", str(tmp_path / "w.pth"), "--size", "64",
                 "--resize", "72", "--labels", str(tmp_path / "labels.txt"), "--out", str(bundle)]) == 0
    m = open_bundle(bundle).manifest
    assert m.outputs[0].shape == ("batch", 7) and m.labels[6] == "genre6" and m.extra["num_classes"] == 7
    assert m.provenance["random_weights"] is False
    answers_match(module, bundle, tmp_path, frames())


def test_torchvision_architecture_by_name(tmp_path):
    try:
        import torchvision
    except Exception as e:  # PyPI's torchvision does not import beside this torch build
        pytest.skip(f"torchvision does not import here ({type(e).__name__}); the path is written against its API")
    module = torchvision.models.get_model("resnet18", num_classes=4).eval()
    torch.save(module.state_dict(), tmp_path / "w.pth")
    bundle = image_classifier(tmp_path / "b", arch="torchvision:resnet18", checkpoint=tmp_path / "w.pth")
    assert open_bundle(bundle).manifest.preprocessing["resize"] == 256
    answers_match(module, bundle, tmp_path, frames())


# ---- a .pt2 program and module:Class files ---------------------------------------------------

def test_exported_program_of_a_custom_cnn(tmp_path):
    module = spread_weights(LeNet(num_classes=5))
    program = torch.export.export(module, (torch.randn(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, tmp_path / "lenet.pt2")
    bundle = tmp_path / "lenet"
    assert main(["export", "image-classifier", "--checkpoint", str(tmp_path / "lenet.pt2"), "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25", "--labels", "a,b,c,d,e", "--random-weights", "--out", str(bundle)]) == 0
    m = open_bundle(bundle).manifest
    assert m.inputs[0].shape == ("batch", 3, 32, 32) and m.preprocessing["size"] == [32, 32]  # from the program
    assert m.labels == list("abcde") and m.preprocessing["mean"] == [0.5] * 3
    answers_match(module, bundle, tmp_path, frames())


def test_grayscale_28x28_module_from_a_file(tmp_path):
    module = spread_weights(GrayCNN(num_classes=10), seed=3)
    torch.save({"state_dict": module.state_dict()}, tmp_path / "gray.pt")
    bundle = tmp_path / "gray"
    assert main(["export", "image-classifier", "--module", f"{TESTS / 'own_models.py'}:GrayCNN", "--checkpoint",
                 str(tmp_path / "gray.pt"), "--size", "28", "--channel-order", "GRAY", "--mean", "0.1307",
                 "--std", "0.3081", "--random-weights", "--out", str(bundle)]) == 0
    m = open_bundle(bundle).manifest
    assert m.inputs[0].shape == ("batch", 1, 28, 28) and m.labels == [str(i) for i in range(10)]
    answers_match(module, bundle, tmp_path, frames())    # colour frames become gray, as the runtime does


def test_python_api_takes_a_module_instance_and_a_preprocessing_dict(tmp_path):
    module = spread_weights(LeNet(num_classes=3), seed=5)
    bundle = image_classifier(tmp_path / "b", module=module, labels=["x", "y", "z"], random_weights=True,
                              preprocessing={"size": [32, 32], "resize": 36, "channel_order": "BGR"})
    m = open_bundle(bundle).manifest
    assert (m.preprocessing["crop"], m.preprocessing["channel_order"]) == ("center", "BGR")
    expected = user_logits(module, bundle, frames())
    check(compare(expected, load(bundle).logits(frames())), "fp32", "api bundle", top1=False)


# ---- bad modules and checkpoints --------------------------------------------------------------

def bad_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "garbage.pt2").write_bytes(b"PK not a program")
    (tmp / "garbage.pth").write_bytes(b"not a state dict")
    (tmp / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    torch.export.save(torch.export.export(LeNet(num_classes=4).eval(), (torch.randn(2, 3, 32, 32),)),
                      tmp / "fixed.pt2")
    torch.save(LeNet(num_classes=4).state_dict(), tmp / "lenet.pth")
    (tmp / "empty_dir").mkdir()
    hf = tmp / "no_processor"
    import transformers as tf
    tf.ViTForImageClassification(tf.ViTConfig(image_size=16, patch_size=8, hidden_size=8, num_hidden_layers=1,
                                              num_attention_heads=1, intermediate_size=8)).save_pretrained(hf)
    own = f"{TESTS / 'own_models.py'}"
    return {
        "no such module": (["--module", "no_such_pkg.models:Net", "--size", "32"], "cannot import no_such_pkg"),
        "no such class": (["--module", f"{own}:Missing", "--size", "32"], "has no Missing"),
        "wrong state_dict": (["--module", f"{own}:GrayCNN", "--checkpoint", str(tmp / "lenet.pth"), "--size", "28",
                              "--channel-order", "GRAY"], "does not fit GrayCNN"),
        "not a state_dict": (["--module", f"{own}:LeNet", "--checkpoint", str(tmp / "garbage.pth"), "--size", "32"],
                             "not a readable state_dict"),
        "text, not a state_dict": (["--module", f"{own}:LeNet", "--checkpoint", str(tmp / "passwd"), "--size", "32"],
                                   "not a readable state_dict"),
        "text, not a built-in's state_dict": (["--arch", "resnet18", "--checkpoint", str(tmp / "passwd")],
                                              "not a readable resnet18 state_dict"),
        "not a program": (["--checkpoint", str(tmp / "garbage.pt2")], "not an ExportedProgram"),
        "program of a fixed batch": (["--checkpoint", str(tmp / "fixed.pt2")],
                                     "exported with a fixed batch of 2; a bundle takes any batch: export it with a"
                                     " dynamic batch dimension"),
        "not a classifier": (["--module", f"{own}:Volume", "--size", "16"], "returns shape"),
        "wrong input size": (["--module", f"{own}:LeNet", "--size", "20"], "cannot take"),
        "label count": (["--module", f"{own}:LeNet", "--size", "32", "--labels", "a,b"], "2 labels for a model with 10"),
        "no size": (["--module", f"{own}:LeNet"], "give the input size"),
        "bad policy": (["--module", f"{own}:LeNet", "--size", "32", "--mean", "0.5,0.5"], "mean/std must hold 3"),
        "state_dict without arch": (["--checkpoint", str(tmp / "lenet.pth")], "say what it holds"),
        "directory without config": (["--checkpoint", str(tmp / "empty_dir")], "without config.json"),
        "no image processor": (["--checkpoint", str(hf)], "no preprocessor_config.json"),
        "unknown arch": (["--arch", "alexnet"], "unknown --arch"),
    }


def test_every_bad_module_or_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    for name, (argv, message) in bad_cases(tmp_path).items():
        capsys.readouterr()
        code = main(["export", "image-classifier", *argv, "--out", str(tmp_path / "never")])
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert len(err.splitlines()) == 1 and message in err, (name, err)
        assert not (tmp_path / "never").exists()


def test_torchvision_name_without_torchvision_is_a_clear_error(tmp_path, capsys):
    try:
        import torchvision  # noqa: F401  (only whether it imports)
        pytest.skip("torchvision imports here")
    except Exception:
        pass
    assert main(["export", "image-classifier", "--arch", "torchvision:resnet50", "--checkpoint", "w.pth",
                 "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs torchvision" in err
