#!/usr/bin/env bash
# The runtime on an AVX2-only x86 (Haswell: AVX2 and FMA, no AVX-512, no VNNI, as consoles' Zen 2),
# emulated by qemu-user on whatever x86 runs this: `bash tests/x86/run.sh [pytest args]`.
#
# The bundles and this machine's answers come from tests/aarch64/build.py (the same set the aarch64
# run reads, with the digits CNN trained here and its int8 with full-range weights); then the
# project's own .venv runs tests/x86/check_parity.py under qemu-x86_64-static -cpu Haswell, where
# ONNX Runtime and numpy see the emulated CPU's CPUID and take its kernels.
# Needs root or sudo for apt-get (else qemu-user-static installed) and the README's test .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${REELRT_X86_RUN:-${XDG_CACHE_HOME:-$HOME/.cache}/reelrt-x86}
# Haswell as QEMU 7.2's TCG can give it (it lacks these few, which ONNX Runtime does not use)
CPU=${REELRT_X86_CPU:-Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm}
step() { echo "== x86 AVX2: $*"; }

source tests/qemu.sh
need_qemu qemu-x86_64-static
rm -rf "$RUN" && mkdir -p "$RUN"
parity_bundles "$RUN/bundles"
step "parity check on $CPU (emulated)"
[ $# -gt 0 ] || set -- tests/x86/check_parity.py
REELRT_TEST_BUNDLES=$RUN/bundles REELRT_CACHE_DIR=$RUN/cache-emulated \
    qemu-x86_64-static -cpu "$CPU" .venv/bin/python -m pytest -p no:cacheprovider -q "$@"
