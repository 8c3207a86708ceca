"""Which foreign CPUs this host can run, read from binfmt_misc.

BuildKit advertises the platforms it detected emulators for, but its detection can miss
one that works: on Debian's docker.io 26.1 with qemu-user-static 7.2, linux/arm/v7 builds
and runs while ``docker buildx ls`` does not list it. For a local engine, mab therefore
also asks the kernel which QEMU interpreters are registered.
"""

from __future__ import annotations

import platform as _host
from pathlib import Path

from mab.platforms import Platform

BINFMT = Path("/proc/sys/fs/binfmt_misc")

# OCI architecture -> the QEMU name used for its binfmt_misc entry (qemu-NAME).
QEMU_NAMES = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "arm",
    "386": "i386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64el",
    "loong64": "loongarch64",
}
_NATIVE = {"x86_64": {"amd64", "386"}, "aarch64": {"arm64", "arm"}}


def host_runs(platform: Platform, binfmt: Path = BINFMT) -> bool:
    """True when this machine runs *platform* binaries natively or through binfmt_misc."""
    if platform.os != "linux":
        return False
    if platform.arch in _NATIVE.get(_host.machine(), set()):
        return True
    name = QEMU_NAMES.get(platform.arch)
    if name is None:
        return False
    entry = binfmt / f"qemu-{name}"
    try:
        return entry.read_text(encoding="utf-8").splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False
