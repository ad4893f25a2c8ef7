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
