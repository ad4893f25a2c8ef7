"""reelrt.export: PyTorch -> validated ONNX bundles.

`export_module(module, example_input, out, ...)` exports any `nn.Module` (see
reelrt.export.torch_onnx); `reelrt export cnn|lstm|gpt2` wraps it per family.
Imported lazily, so reading provenance or tolerances does not load torch.
"""


def __getattr__(name: str):
    if name == "export_module":
        from .torch_onnx import export_module
        return export_module
    raise AttributeError(f"module 'reelrt.export' has no attribute {name!r}")


__all__ = ["export_module"]
