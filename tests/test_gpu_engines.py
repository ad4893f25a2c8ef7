"""Engine keys, the engines/ index and plan lookup: a stale or foreign plan is never found (CPU only)."""
from __future__ import annotations

import copy
import json

import pytest

from reelrt.runtime import BundleError, open_bundle
from reelrt.runtime.bundle import BundleWriter
from reelrt.runtime.backends.gpu.engines import (INDEX, KEY_FIELDS, DeviceFacts, engine_fields, engine_key, find_plan, read_index,
                                    store_plan, timing_cache_path)
from reelrt.runtime.bundle.manifest import TensorSpec

H100 = DeviceFacts("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
PLAN = b"serialized engine bytes"


def copy_files(bundle, writer) -> None:
    for rel in bundle.manifest.artifacts:
        (writer.dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (writer.dir / rel).write_bytes((bundle.root / rel).read_bytes())


def rewrite(bundle, out, **changes):
    """A copy of `bundle` at `out` whose manifest has the given fields changed."""
    manifest = copy.deepcopy(bundle.manifest)
    for field, value in changes.items():
        setattr(manifest, field, value)
    with BundleWriter(out) as w:
        copy_files(bundle, w)
        return open_bundle(w.commit(manifest))


@pytest.fixture
def compiled(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    return open_bundle(store_plan(bundle, tiny_bundle, engine_fields(bundle, H100), PLAN, 12.3))


def test_key_depends_on_every_field(tiny_bundle):
    fields = engine_fields(open_bundle(tiny_bundle), H100)
    assert set(fields) == set(KEY_FIELDS)
    key = engine_key(fields)
    assert key == engine_key(json.loads(json.dumps(fields))) and len(key) == 32
    for name in KEY_FIELDS:
        changed = dict(fields, **{name: "other" if name != "profiles" else fields["profiles"][:1]})
        assert engine_key(changed) != key, name


def test_stored_plan_is_found_and_named_in_the_manifest(compiled):
    plan, why = find_plan(compiled, H100)
    assert plan is not None and plan.read_bytes() == PLAN, why
    assert plan.name == engine_key(engine_fields(compiled, H100)) + ".plan"
    assert compiled.manifest.target == {"backend": "tensorrt", "path": "model.onnx", "engines": INDEX}
    (entry,) = read_index(compiled)
    assert entry["gpu"] == H100.gpu and entry["build_seconds"] == 12.3
    assert compiled.manifest.artifacts[entry["plan"]].size == len(PLAN)


@pytest.mark.parametrize("facts, field", [
    (DeviceFacts("10.14.1.48", H100.gpu, "9.0"), "tensorrt"),
    (DeviceFacts(H100.tensorrt, "NVIDIA L4", "8.9"), "compute_capability"),
    (DeviceFacts(H100.tensorrt, "NVIDIA H100 PCIe", "9.0"), "gpu"),
])
def test_other_tensorrt_or_gpu_finds_no_plan(compiled, facts, field):
    plan, why = find_plan(compiled, facts)
    assert plan is None and field in why


@pytest.mark.parametrize("changes, field", [
    ({"precision": "fp16"}, "precision"),
    ({"extra": {"max_batch": 8}}, "profiles"),
])
def test_other_precision_or_profiles_find_no_plan(compiled, tmp_path, changes, field):
    changed = rewrite(compiled, tmp_path / "changed", **changes)
    assert INDEX in changed.manifest.artifacts
    plan, why = find_plan(changed, H100)
    assert plan is None and field in why


def test_a_bundle_without_derivable_profiles_finds_no_plan_instead_of_failing(compiled, tmp_path):
    odd = rewrite(compiled, tmp_path / "odd", inputs=[TensorSpec("pixels", "float32", ("batch", 3, "height", 4))])
    plan, why = find_plan(odd, H100)
    assert plan is None and "'height' has no known role" in why


def test_a_changed_model_finds_no_plan(compiled, tmp_path):
    onnx = (compiled.root / "model.onnx").read_bytes()
    with BundleWriter(tmp_path / "reexported") as w:
        copy_files(compiled, w)
        (w.dir / "model.onnx").write_bytes(onnx + b"\x32\x01x")  # doc_string "x": a different model
        stale = open_bundle(w.commit(copy.deepcopy(compiled.manifest)))
    plan, why = find_plan(stale, H100)
    assert plan is None and "model_sha256" in why


def test_a_forged_index_entry_is_refused(compiled, tmp_path):
    """An entry whose key was copied but whose facts are another GPU's never matches."""
    (entry,) = read_index(compiled)
    forged = dict(entry, gpu="NVIDIA L4")
    with BundleWriter(tmp_path / "forged") as w:
        copy_files(compiled, w)
        (w.dir / INDEX).write_text(json.dumps({"format": 1, "engines": [forged]}))
        bundle = open_bundle(w.commit(copy.deepcopy(compiled.manifest)))
    assert find_plan(bundle, DeviceFacts(H100.tensorrt, "NVIDIA L4", H100.compute_capability))[0] is None


def test_plans_for_two_gpus_live_side_by_side_and_rebuilds_replace(compiled):
    l4 = DeviceFacts(H100.tensorrt, "NVIDIA L4", "8.9")
    both = open_bundle(store_plan(compiled, compiled.root, engine_fields(compiled, l4), b"l4 plan", 5.0))
    assert find_plan(both, H100)[0].read_bytes() == PLAN
    assert find_plan(both, l4)[0].read_bytes() == b"l4 plan"
    again = open_bundle(store_plan(both, both.root, engine_fields(both, l4), b"l4 plan v2", 5.0))
    assert len(read_index(again)) == 2 and find_plan(again, l4)[0].read_bytes() == b"l4 plan v2"
    assert len([a for a in again.manifest.artifacts if a.endswith(".plan")]) == 2


def test_plans_of_an_older_model_are_dropped_when_a_new_one_is_stored(compiled, tmp_path):
    fields = dict(engine_fields(compiled, H100), model_sha256="0" * 64)
    with BundleWriter(tmp_path / "mixed") as w:
        copy_files(compiled, w)
        (entry,) = read_index(compiled)
        old = dict(entry, model_sha256="0" * 64, key=engine_key(fields), plan=f"engines/{engine_key(fields)}.plan")
        (w.dir / old["plan"]).write_bytes(b"old")
        (w.dir / INDEX).write_text(json.dumps({"format": 1, "engines": [entry, old]}))
        mixed = open_bundle(w.commit(copy.deepcopy(compiled.manifest)))
    l4 = DeviceFacts(H100.tensorrt, "NVIDIA L4", "8.9")
    cleaned = open_bundle(store_plan(mixed, mixed.root, engine_fields(mixed, l4), b"l4", 1.0))
    assert {e["gpu"] for e in read_index(cleaned)} == {H100.gpu, "NVIDIA L4"}
    assert old["plan"] not in cleaned.manifest.artifacts


def test_a_modified_plan_fails_the_bundle_check(compiled):
    (entry,) = read_index(compiled)
    (compiled.root / entry["plan"]).write_bytes(PLAN[::-1])
    with pytest.raises(BundleError, match="sha256"):
        open_bundle(compiled.root, verify="always")


def test_malformed_index_means_no_plans(compiled):
    size = compiled.manifest.artifacts[INDEX].size
    (compiled.root / INDEX).write_text("[1, 2]".ljust(size))
    unchecked = open_bundle(compiled.root, verify="never")
    assert read_index(unchecked) == []


def test_timing_cache_lives_in_the_runtime_cache_per_tensorrt_and_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("REELRT_CACHE_DIR", str(tmp_path))
    path = timing_cache_path(H100)
    assert path.parent == tmp_path / "tensorrt" and "10.13.0.35" in path.name and "sm9.0" in path.name
    assert timing_cache_path(DeviceFacts(H100.tensorrt, "NVIDIA L4", "8.9")) != path
    assert timing_cache_path(DeviceFacts("10.14", H100.gpu, "9.0")) != path
