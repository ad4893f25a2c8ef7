#!/usr/bin/env bash
# The runtime on aarch64, emulated on this x86 machine: `bash tests/aarch64/run.sh [pytest args]`.
#
# From the package registries alone: Debian's qemu-user-static, Debian's arm64 python3.11
# unpacked into a folder that qemu uses as its root (-L), and the aarch64 manylinux wheels of
# the runtime's dependencies at the pins of constraints.txt. Both are cached
# ($REELRT_AARCH64_CACHE, default ~/.cache/reelrt-aarch64) and made again only when their inputs
# change. On x86 (the project's .venv, with torch) tests/aarch64/build.py exports the tiny bundles
# and records x86's answers. Then, emulated, the parity check against x86 runs on a Cortex-A76
# (armv8.2), and on a Cortex-A53 (armv8.0; $REELRT_AARCH64_CPU) the parity check and the
# runtime's torch-free tests on those bundles (or the pytest arguments given).
# Needs root or sudo for apt-get (else qemu-user-static installed), a private mount namespace for
# /proc/cpuinfo (root, or user namespaces), and the .venv of the README's test command.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${REELRT_AARCH64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/reelrt-aarch64}
CPU=${REELRT_AARCH64_CPU:-cortex-a53}
# the runtime's dependencies and extras (text, images, signing, serve, grammar), and what its tests need besides torch
# (onnx builds their toy graphs, jsonschema holds every manifest they write to docs/manifest.schema.json)
WHEELS="numpy onnxruntime tokenizers opencv-python-headless cryptography starlette uvicorn prometheus-client python-multipart llguidance onnx pytest hypothesis jsonschema"
DEBS="python3.11 libstdc++6 libgomp1"
mkdir -p "$CACHE"
step() { echo "== aarch64: $*"; }

source tests/qemu.sh
need_qemu qemu-aarch64-static

# Debian's arm64 python3.11 and the libraries it and the wheels load, resolved by apt in a
# private state (arm64 only, nothing installed): the system's apt configuration is left alone.
ROOT=$CACHE/root
if [ "$(cat "$ROOT/.packages" 2>/dev/null)" != "$DEBS" ]; then
    step "unpacking Debian arm64 packages: $DEBS"
    APT=$CACHE/apt
    rm -rf "$APT" "$ROOT.partial" && mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$ROOT.partial"
    : >"$APT/status"
    opts=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Dir::State::Lists="$APT/lists"
          -o Dir::State::status="$APT/status" -o Dir::Cache="$APT" -o Dir::Cache::archives="$APT/archives"
          -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq)
    apt-get "${opts[@]}" update
    # shellcheck disable=SC2086
    apt-get "${opts[@]}" install -y --download-only --no-install-recommends $DEBS >/dev/null
    for deb in "$APT"/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT.partial"; done
    echo "$DEBS" >"$ROOT.partial/.packages"
    rm -rf "$ROOT" "$APT" && mv "$ROOT.partial" "$ROOT"
fi

# aarch64 wheels at the project's pins; glibc 2.36 (bookworm) takes manylinux_2_17 .. 2_36
SITE=$CACHE/site
KEY="$WHEELS $(sha256sum constraints.txt | cut -c1-16)"
if [ "$(cat "$SITE/.key" 2>/dev/null)" != "$KEY" ]; then
    step "installing aarch64 wheels: $WHEELS"
    platforms=(--platform manylinux2014_aarch64)
    for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
    rm -rf "$SITE.partial"
    # shellcheck disable=SC2086
    .venv/bin/pip install -q --disable-pip-version-check --target "$SITE.partial" --only-binary=:all: \
        --implementation cp --python-version 311 "${platforms[@]}" -c constraints.txt $WHEELS
    echo "$KEY" >"$SITE.partial/.key"
    rm -rf "$SITE" && mv "$SITE.partial" "$SITE"
fi

# this checkout's reelrt as a client installs it (a pure-Python wheel), built from a copy of the
# files git knows of (committed or not), so no build/ folder of the checkout is read or left
RUN=$CACHE/run
rm -rf "$RUN" && mkdir -p "$RUN/src"
step "installing this checkout's reelrt"
git ls-files -z --cached --others --exclude-standard \
    | xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' - | xargs -0 cp --parents -t "$RUN/src"
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation --target "$RUN/reelrt" "$RUN/src"
parity_bundles "$RUN/bundles"

# ONNX Runtime reads /proc/cpuinfo to pick its kernels, and under qemu-user that is the host's
# x86 one, on which `import onnxruntime` crashes: in a private mount namespace /proc/cpuinfo is
# replaced by one that describes the emulated CPU. sys.executable is the wrapper script (qemu -0),
# so tests that start a fresh interpreter get an emulated one too, on the same CPU (QEMU_CPU).
cat >"$RUN/python" <<EOF
#!/bin/sh
exec qemu-aarch64-static -L "$ROOT" -0 "$RUN/python" "$ROOT/usr/bin/python3.11" "\$@"
EOF
chmod +x "$RUN/python"
if [ "$(id -u)" = 0 ]; then unshare=(unshare --mount); else unshare=(unshare --map-root-user --mount); fi
export PYTHONPATH=$RUN/reelrt:$SITE PYTHONNOUSERSITE=1 REELRT_TEST_BUNDLES=$RUN/bundles REELRT_CACHE_DIR=$RUN/cache
emulated() {  # CPU, pytest arguments...
    .venv/bin/python tests/aarch64/cpuinfo.py "$1" "$(nproc)" >"$RUN/cpuinfo-$1"
    QEMU_CPU=$1 "${unshare[@]}" sh -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' "$RUN/cpuinfo-$1" \
        "$RUN/python" -m pytest -p no:cacheprovider -q "${@:2}"
}

# armv8.2 (dot product, fp16 arithmetic, as a Cortex-A55 has): ONNX Runtime takes other kernels there
step "parity check on cortex-a76 (emulated)"
emulated cortex-a76 tests/aarch64/check_parity.py
# armv8.0, the Cortex-A53 of most set-top and TV boxes: the parity check and the runtime's own tests
tests=(tests/aarch64/check_parity.py tests/test_bundle.py tests/test_hostile_bundles.py tests/test_bad_inputs.py
       tests/test_cnn_image.py tests/test_lstm_runtime.py tests/test_gpt2_generate.py tests/test_gpt2_sampling.py
       tests/test_concurrency.py tests/test_session.py tests/test_wall.py tests/test_grammar.py
       --deselect tests/test_concurrency.py::test_thread_safety_cost_bench_runs)  # a benchmark's smoke run
[ $# -gt 0 ] && tests=("$@")
step "the runtime's tests on $CPU (emulated)"
emulated "$CPU" "${tests[@]}"
