# Sourced by the emulated runs (tests/aarch64/run.sh, tests/x86/run.sh), which define step().
# need_qemu BINARY: Debian's qemu-user-static when BINARY is missing (it runs another CPU's code
# by translation; no binfmt registration needed). Needs root or sudo for apt-get.
need_qemu() {
    command -v "$1" >/dev/null && return
    step "installing qemu-user-static"
    local sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
}

# parity_bundles DIR: at DIR, tests/aarch64/build.py's tiny bundles and this machine's answers to
# them. With REELRT_PARITY_BUNDLES set (CI), they are built there once and DIR links to them, so
# the x86 and aarch64 runs read one set.
parity_bundles() {
    local built=${REELRT_PARITY_BUNDLES:-$1}
    if [ ! -d "$built" ]; then  # build.py renames its finished folder into place: present means whole
        step "exporting bundles and recording this machine's answers"
        REELRT_CACHE_DIR=$built.cache .venv/bin/python tests/aarch64/build.py "$built" >"$built.log" 2>&1 \
            || { cat "$built.log"; exit 1; }
    fi
    [ "$built" = "$1" ] || ln -sfn "$built" "$1"
}
