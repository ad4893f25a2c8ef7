"""Print a /proc/cpuinfo for an emulated ARM CPU: `python cpuinfo.py cortex-a53 4`.

ONNX Runtime reads /proc/cpuinfo (through pytorch/cpuinfo) to pick its kernels; under
qemu-user that file is the host's x86 one, on which `import onnxruntime` crashes. Each entry
gives the part number Linux shows for a qemu CPU model and the features that model has.
"""
from __future__ import annotations

import sys

ARMV8 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
ARMV82 = ARMV8 + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"
# qemu -cpu model -> (CPU part, variant, Features)
CPUS = {
    "cortex-a53": ("0xd03", "0x0", ARMV8),
    "cortex-a72": ("0xd08", "0x0", ARMV8),
    "cortex-a76": ("0xd0b", "0x4", ARMV82),
    "neoverse-n1": ("0xd0c", "0x4", ARMV82),
}


def cpuinfo(model: str, processors: int) -> str:
    part, variant, features = CPUS[model]
    return "\n".join(f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
                     f"CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: 0\n"
                     for i in range(processors))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in CPUS:
        raise SystemExit(f"usage: cpuinfo.py {'|'.join(CPUS)} PROCESSORS")
    print(cpuinfo(sys.argv[1], int(sys.argv[2])), end="")
