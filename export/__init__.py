"""reelrt.export: PyTorch -> validated ONNX bundles.

    image_classifier(out, checkpoint=..., arch=..., module=...)   the user's image classifier
    text_classifier(out, module=..., tokenizer=..., labels=...)   the user's LSTM/GRU text classifier
    export_module(module, example_input, out, ...)                any nn.Module (torch_onnx.py)

`reelrt export image-classifier|text-classifier|gpt2` wraps the same functions. Imported lazily,
so reading provenance or tolerances does not load torch.
"""

_NAMES = {"export_module": "torch_onnx", "image_classifier": "cnn", "text_classifier": "recurrent"}


def __getattr__(name: str):
    if name in _NAMES:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'reelrt.export' has no attribute {name!r}")


__all__ = list(_NAMES)
