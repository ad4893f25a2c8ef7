"""Write a quantized bundle from a source bundle: the part every precision pass shares.

A pass only turns the source ONNX into a smaller one (and validates it against the fp32 graph in
its own way); copying the other artifacts (tokenizer, labels, the reference set), checking the new
graph against the source model's answers to the reference inputs, updating the manifest and the
atomic write happen here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from reelrt.export.provenance import tool_versions
from reelrt.runtime.bundle import Bundle, BundleWriter
from reelrt.runtime.bundle.manifest import Manifest
from reelrt.runtime.validation import QualityGate
from reelrt.runtime.errors import InputError

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
        raise InputError(f"--out must differ from the source bundle {src.root}")
    with BundleWriter(out) as w:
        # the model (and its external data) is replaced; plans compiled from it would be stale
        w.copy_artifacts(src, lambda rel: rel != m.model and not rel.startswith((m.model + ".", "engines/")))
        validation = model_pass(src.model_path, w.dir / "model.onnx")
        against_source = against_source_model(src, w.dir / "model.onnx", precision, gate)
        if against_source is not None:
            validation["against_source_model"] = against_source
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


def against_source_model(src: Bundle, model: Path, precision: str, gate: QualityGate | None = None) -> dict | None:
    """The new graph under ONNX Runtime on the source bundle's reference inputs against the
    source model's answers to them (PyTorch's, written at export), within `precision`'s
    tolerance; ValidationError outside it (unless `gate` accepts the loss), None when the bundle
    carries no answers."""
    import onnxruntime as ort

    from reelrt.runtime.reference import check_against_source, has_source_answers, reference_feeds
    if not has_source_answers(src):
        return None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, reference_feeds(src))))
    return check_against_source(src, outputs, precision, f"the {precision} graph", gate)
