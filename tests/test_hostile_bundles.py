"""Every hostile bundle of the generated corpus is refused before a session exists,
with a BundleError that names the cause, in bounded time and memory."""
from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path

import pytest

from conftest import make_tiny_bundle, make_tiny_text_bundle
from hostile_corpus import CASES, generate, publisher_key, signed_maker
from manifest_schema import schema_errors
from reelrt.runtime import BundleError, load
from reelrt.runtime.bundle.manifest import parse_manifest

# malformed manifests whose flaw JSON Schema cannot state; docs/bundle-spec.md lists these rules
# under "Checks beyond the schema", and a reader applies them after the schema
BEYOND_SCHEMA = {"absurd_dimensions": "the product of fixed dimensions",
                 "tokenizer_not_an_artifact": "tokenizer.path names a listed artifact",
                 "tokenizer_not_an_artifact_generator": "tokenizer.path names a listed artifact"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, gpt2_tiny_bundle):
    text = make_tiny_text_bundle(tmp_path_factory.mktemp("text-source") / "text")

    def copier(source):  # one export, copied per case: the cases damage copies, never the source
        return lambda out: shutil.copytree(source, out)
    root = tmp_path_factory.mktemp("hostile")
    return root, generate(root, {"image": make_tiny_bundle, "text": copier(text), "generator": copier(gpt2_tiny_bundle),
                                 "signed": signed_maker(make_tiny_bundle, root)})


@pytest.fixture
def no_sessions(monkeypatch):
    import onnxruntime

    def forbidden(*args, **kwargs):
        raise AssertionError("an ONNX Runtime session was created for a hostile bundle")
    monkeypatch.setattr(onnxruntime, "InferenceSession", forbidden)


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused_before_any_session(corpus, name, no_sessions):
    root, cases = corpus
    path, expected = cases[name]
    trusted = [publisher_key(root)] if CASES[name][2] == "signed" else None
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(BundleError, match=expected):
            load(path, verify="always", trusted_keys=trusted)
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # generous bounds: a refusal must not read, allocate or loop in proportion to what the file claims
    assert elapsed < 10, f"{name} took {elapsed:.1f} s"
    assert peak < 64 * 1024 * 1024, f"{name} allocated {peak / 1e6:.0f} MB"


def _malformed(path) -> bool:
    try:
        parse_manifest((path / "manifest.json").read_bytes())
    except BundleError:
        return True
    return False


def test_malformed_manifests_fail_the_schema(corpus):
    """Every corpus manifest the runtime refuses as malformed fails docs/manifest.schema.json, but for
    the rules the schema cannot express, which the spec states in prose."""
    _, cases = corpus
    malformed = {name for name, (path, _) in cases.items() if not path.joinpath("manifest.json").is_symlink()
                 and _malformed(path)}
    assert len(malformed) >= 12
    passing = {name for name in malformed if not schema_errors((cases[name][0] / "manifest.json").read_bytes())}
    assert passing == set(BEYOND_SCHEMA)
    spec = (Path(__file__).resolve().parent.parent / "docs" / "bundle-spec.md").read_text()
    for rule in BEYOND_SCHEMA.values():
        assert rule in spec


def test_corpus_covers_the_threats():
    """The issue's list of hostile inputs, each present in the corpus."""
    for needed in ("manifest_path_traversal", "external_data_traversal", "symlink_out_of_bundle", "checksum_mismatch",
                   "truncated_model", "zero_byte_model", "manifest_absurd_size", "manifest_absurd_depth",
                   "absurd_dimensions", "unknown_format_version", "wrong_family_task", "tokenizer_not_json",
                   "tokenizer_not_json_generator", "signature_removed", "signed_by_another_key",
                   "signed_manifest_edited", "signed_model_replaced_and_rehashed", "signed_model_modified"):
        assert needed in CASES


def test_valid_bundle_still_loads(tmp_path):
    """The corpus's starting points are accepted, so every refusal above is due to its damage."""
    from reelrt.runtime import Model, open_bundle
    bundle = make_tiny_bundle(tmp_path / "valid")
    assert Model(open_bundle(bundle, verify="always"), device="cpu").backend is not None
    signed = signed_maker(make_tiny_bundle, tmp_path)(tmp_path / "signed")
    assert load(signed, device="cpu", verify="always", trusted_keys=[publisher_key(tmp_path)]).backend is not None
