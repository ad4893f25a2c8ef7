"""Write a quantized bundle from a source bundle: the part every precision pass shares.

A pass only turns the source ONNX into a smaller one; copying the other artifacts
(tokenizer, labels), updating the manifest and the atomic write happen here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from reelrt.export.provenance import tool_versions
from reelrt.runtime.bundle import Bundle, BundleWriter
from reelrt.runtime.bundle.manifest import Manifest
from reelrt.runtime.validation import QualityGate

# pass(src_model, dst_model) -> validation facts to record in the manifest
ModelPass = Callable[[Path, Path], dict]


def derive_bundle(src: Bundle, out: str | Path, precision: str, model_pass: ModelPass, settings: dict,
                  dtypes: dict[str, str] | None = None, gate: QualityGate | None = None) -> Path:
    """Run `model_pass` on the source model into a new bundle at `out`, copying everything else.

    `dtypes` overrides input/output dtypes by name (an fp16 graph takes float16 inputs, say).
    The source's compiled target is dropped: a new graph must be compiled again. `gate` is the
    QualityGate the pass checked with; its outcome is recorded as validation.quality_gate.
    """
    m = src.manifest
    if Path(out).resolve() == src.root:
        raise ValueError("--out must differ from the source bundle")
    with BundleWriter(out) as w:
        # the model (and its external data) is replaced; plans compiled from it would be stale
        w.copy_artifacts(src, lambda rel: rel != m.model and not rel.startswith((m.model + ".", "engines/")))
        validation = model_pass(src.model_path, w.dir / "model.onnx")
        retype = lambda specs: [type(s)(s.name, (dtypes or {}).get(s.name, s.dtype), s.shape) for s in specs]
        manifest = Manifest(
            family=m.family, task=m.task, precision=precision, model="model.onnx",
            inputs=retype(m.inputs), outputs=retype(m.outputs), artifacts={},
            preprocessing=m.preprocessing, labels=m.labels, head=m.head, tokenizer=m.tokenizer, generation=m.generation,
            provenance={**m.provenance, "tools": tool_versions(), "quantized_from": {
                "precision": m.precision, "model_sha256": m.artifacts[m.model].sha256, "settings": settings}},
            validation={**validation, **({"quality_gate": gate.record()} if gate else {}),
                        "source_validation": m.validation},
            extra=m.extra)
        return w.commit(manifest)
