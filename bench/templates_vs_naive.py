#!/usr/bin/env python3
"""Benchmark: mab's templates against naive single-stage Dockerfiles, same apps.

For every stack mab ships a template for (go, rust, cpp, python, node, static), each sample
app is built with mab's rendered template and with a naive single-stage Dockerfile, for
linux/amd64 and linux/arm64, one build at a time, with --no-cache, and pushed to the
local registry. The templates' cache mounts (go-build, cargo target, apt) must start
empty: with BuildKit 0.29's docker driver --no-cache already hides their contents, and
the script also empties every cache mount of the builder before each build, in case
another BuildKit does not (--keep-cache-mounts skips that). Printed per build:

- wall: seconds of the whole `docker buildx build` call (context, build, export, push);
- step: seconds of the build's compile or install step alone (go build, cargo build or
  install, make, pip install, npm ci or install), from BuildKit's progress events;
- export: seconds of BuildKit's "exporting to image" step (layers, push);
- size: the image's compressed size, the sum of its layers as `crane manifest` reads them
  back from the registry.

After each build the image runs once on its platform (foreign CPUs under QEMU) and the
first line it prints must match between the template's and the naive image.

Samples:

- small: the repository's examples (examples/greeter, rust, cpp, python, node, static);
- heavy (go, rust, cpp only): a compile-heavy synthetic program generated into a temporary
  folder (no third-party code, nothing from the network): go, packages of generated
  functions; rust, one crate of generated modules; C, generated .c files and a Makefile.
  The generated functions compute the same thing in the three languages. Their size is
  tuned so that an emulated arm64 build takes about 1-2 minutes on a 2-core x86-64
  machine; --scale changes it.

Compiled stacks on linux/arm64: the templates run the compiler on the build platform and
cross-compile; the naive Dockerfiles run the compiler on the target platform, under QEMU.

Base images (containers have no network; the official names are mapped to offline
images with --build-context NAME=docker-image://IMAGE):

- template builds: the mirrors scripts/make-mirrors makes (localhost:5000/mirror/...);
- naive compiled builds need a build image for each target CPU, and the rust and
  debian-cross mirrors are amd64 only, so this script makes, once, in the registry:
  localhost:5000/bench/golang:1.19-bookworm (mmdebstrap minbase + golang-go, both CPUs;
  the arm64 rootfs takes about 5 minutes under QEMU), localhost:5000/bench/rust:1.63-bookworm
  (rustc, cargo, gcc) and localhost:5000/bench/gcc:12-bookworm (gcc, g++, make), the
  last two unpacked with `mmdebstrap --variant=extract` (no QEMU, about 30 s per CPU).
  Root file system tarballs are cached in /var/cache/mab-mirrors.

    python bench/templates_vs_naive.py                       # everything (~13 min)
    python bench/templates_vs_naive.py --stacks go,rust --no-small
    python bench/templates_vs_naive.py --print-dockerfiles   # show them, build nothing

Needs the engine, QEMU and the registry (scripts/engine-up), the mirrors
(scripts/make-mirrors), crane, mmdebstrap and arch-test. Root.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mab.planning.render import render_template  # noqa: E402

REGISTRY = "localhost:5000"
CACHE = Path("/var/cache/mab-mirrors")
STACKS = ("go", "rust", "cpp", "python", "node", "static")
PLATFORMS = ("linux/amd64", "linux/arm64")

# ---------------------------------------------------------------------------------------
# Base images
# ---------------------------------------------------------------------------------------
GOLANG = f"{REGISTRY}/bench/golang:1.19-bookworm"
RUST = f"{REGISTRY}/bench/rust:1.63-bookworm"
GCC = f"{REGISTRY}/bench/gcc:12-bookworm"
MIRROR = f"{REGISTRY}/mirror"

# Official name -> offline image, for the templates (their build stages run on the build
# platform, so the amd64-only rust and debian-cross mirrors serve every target).
TEMPLATE_BASES = {
    "golang:1.19-bookworm": GOLANG,
    "rust:1.63-bookworm": f"{MIRROR}/rust:1.63-bookworm",
    "debian:bookworm": f"{MIRROR}/debian-cross:bookworm",
    "gcr.io/distroless/cc-debian12:nonroot": f"{MIRROR}/distroless-cc:debian12-nonroot",
    "python:3.11-slim-bookworm": f"{MIRROR}/python:3.11-slim-bookworm",
    "node:18-bookworm-slim": f"{MIRROR}/node:18-bookworm-slim",
    "nginxinc/nginx-unprivileged:1.22-alpine": f"{MIRROR}/nginx-unprivileged:1.22",
    "busybox:1.35": f"{MIRROR}/busybox:1.35",
}
# ... and for the naive Dockerfiles (one stage on the target CPU: a build image per CPU).
NAIVE_BASES = {
    "golang:1.19-bookworm": GOLANG,
    "rust:1.63-bookworm": RUST,
    "gcc:12-bookworm": GCC,
    "python:3.11-slim-bookworm": f"{MIRROR}/python:3.11-slim-bookworm",
    "node:18-bookworm-slim": f"{MIRROR}/node:18-bookworm-slim",
    "nginx:1.22": f"{MIRROR}/nginx-unprivileged:1.22",
}

ROOTFS_DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
ADD rootfs-${{TARGETARCH}}.tar /
ENV {env}
WORKDIR {workdir}
"""
PATH_ENV = "PATH={}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Run in the unpacked root file system (mmdebstrap --extract-hook, "$1" is its folder):
# what the packages' maintainer scripts would have made and --variant=extract skips.
EXTRACT_FIXUP = """\
set -e
ln -sf gcc "$1/usr/bin/cc"
if [ -e "$1/usr/bin/g++" ]; then ln -sf g++ "$1/usr/bin/c++"; fi
printf 'root:x:0:0:root:/root:/bin/sh\\n' > "$1/etc/passwd"
printf 'root:x:0:\\n' > "$1/etc/group"
mkdir -p "$1/root" "$1/tmp" "$1/var/tmp"
chmod 1777 "$1/tmp" "$1/var/tmp"
rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*
"""


@dataclass(frozen=True)
class BaseImage:
    ref: str
    rootfs: Callable[[str], Path]  # Debian architecture -> rootfs tarball
    env: str
    workdir: str


def sh(*cmd: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(cmd), input=input_text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done


def debian_mirror() -> str:
    """The machine's Debian mirror, as scripts/make-mirrors finds it."""
    lib = REPO / "scripts" / "lib" / "debian-apt.sh"
    return sh("bash", "-c", f'. "{lib}" && mab_debian_mirror').stdout.strip()


def _rootfs(
    tar_name: str, packages: str, variant: str, extra: tuple[str, ...]
) -> Callable[[str], Path]:
    def make(arch: str) -> Path:
        tar = CACHE / f"{tar_name}-{arch}.tar"
        if not tar.exists():
            how = "minutes under QEMU" if variant == "minbase" else "no QEMU"
            note(f"making the {arch} {tar_name} rootfs (mmdebstrap {variant}; {how})")
            tmp = tar.with_name(tar.name + ".tmp")
            sh(
                "mmdebstrap",
                f"--variant={variant}",
                f"--architectures={arch}",
                "--format=tar",
                f"--include={packages}",
                "--aptopt=Acquire::Check-Valid-Until false",
                *extra,
                "bookworm",
                str(tmp),
                debian_mirror(),
            )
            tmp.rename(tar)
        return tar

    return make


def minbase_rootfs(name: str, packages: str) -> Callable[[str], Path]:
    """A `mmdebstrap --variant=minbase` rootfs: package scripts run (under QEMU if foreign).
    golang-1.19-bookworm-amd64.tar is also scripts/make-mirrors' tarball (same recipe)."""
    return _rootfs(name, packages, "minbase", ())


def extract_rootfs(name: str, packages: str) -> Callable[[str], Path]:
    """A `mmdebstrap --variant=extract` rootfs: packages unpacked only, no QEMU needed."""
    extra = ("--skip=check/qemu", "--skip=output/dev", f"--extract-hook={EXTRACT_FIXUP}")
    return _rootfs(f"bench-{name}", packages, "extract", extra)


BENCH_BASES = (
    BaseImage(
        GOLANG,
        minbase_rootfs("golang-1.19-bookworm", "golang-go,ca-certificates"),
        "GOPATH=/go GOCACHE=/root/.cache/go-build CGO_ENABLED=0 \\\n    "
        + PATH_ENV.format("/go/bin:/usr/lib/go/bin:"),
        "/go",
    ),
    BaseImage(
        RUST,
        extract_rootfs("rust-1.63-bookworm", "rustc,cargo,gcc,libc6-dev,make,dash,coreutils"),
        "CARGO_HOME=/usr/local/cargo RUST_VERSION=1.63 \\\n    "
        + PATH_ENV.format("/usr/local/cargo/bin:"),
        "/",
    ),
    BaseImage(
        GCC,
        extract_rootfs("gcc-12-bookworm", "gcc,g++,libc6-dev,make,dash,coreutils,grep,sed"),
        PATH_ENV.format(""),
        "/",
    ),
)


def ensure_base(base: BaseImage) -> None:
    if subprocess.run(["crane", "digest", base.ref], check=False, capture_output=True).returncode:
        note(f"making {base.ref} (once; it stays in the registry)")
        CACHE.mkdir(parents=True, exist_ok=True)
        # hard links (a build context sends a symlink as a link), so the folder is on CACHE's fs
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            for arch in ("amd64", "arm64"):
                os.link(base.rootfs(arch), Path(tmp) / f"rootfs-{arch}.tar")
            (Path(tmp) / "Dockerfile").write_text(
                ROOTFS_DOCKERFILE.format(env=base.env, workdir=base.workdir)
            )
            sh(
                "docker",
                "buildx",
                "build",
                "--platform",
                "linux/amd64,linux/arm64",
                "--provenance=false",
                "--output",
                f"type=image,name={base.ref},push=true,compression=gzip,compression-level=1",
                tmp,
            )


# ---------------------------------------------------------------------------------------
# Naive Dockerfiles: what a team writes first (one stage, COPY . . before the build,
# root, the whole toolchain in the image). {main} and {binary} are per sample.
# ---------------------------------------------------------------------------------------
NAIVE = {
    "go": """\
FROM golang:1.19-bookworm
WORKDIR /src
COPY . .
RUN go build -o /usr/local/bin/{binary} {main}
CMD ["{binary}"]
""",
    # the pattern the official rust image's documentation shows
    "rust": """\
FROM rust:1.63-bookworm
WORKDIR /usr/src/app
COPY . .
RUN cargo install --path .
CMD ["{binary}"]
""",
    "cpp": """\
FROM gcc:12-bookworm
COPY . /usr/src/app
WORKDIR /usr/src/app
RUN make -j"$(nproc)"
CMD ["./{binary}"]
""",
    # pip into the system interpreter, as the official image allows (so does the mirror)
    "python": """\
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -r requirements.txt
CMD ["python", "app.py"]
""",
    "node": """\
FROM node:18-bookworm-slim
WORKDIR /app
COPY . .
RUN npm install
CMD ["node", "index.js"]
""",
    # nginx:1.22 maps to the only nginx here, mirror/nginx-unprivileged:1.22 (Debian
    # nginx-light, port 8080, uid 101)
    "static": """\
FROM nginx:1.22
COPY . /usr/share/nginx/html
""",
}
# The step that compiles or installs, in both Dockerfiles of a stack (BuildKit step name).
STEP = {
    "go": re.compile(r"RUN .*go build"),
    "rust": re.compile(r"RUN .*cargo (build|install)"),
    "cpp": re.compile(r"RUN .*make -j"),
    "python": re.compile(r"RUN .*pip .*install"),
    "node": re.compile(r"RUN .*npm (ci|install)"),
}


@dataclass(frozen=True)
class Variant:
    label: str  # "template", "template static", "naive"
    dockerfile: str
    bases: dict[str, str]


@dataclass(frozen=True)
class Sample:
    name: str
    stack: str
    heavy: bool
    context: Path
    variants: tuple[Variant, ...]
    runs: bool = True  # run the image and compare its first line of output


def used(variant: Variant) -> dict[str, str]:
    """The base images a Dockerfile names in FROM, mapped to their offline images."""
    return {
        name: image
        for name, image in variant.bases.items()
        if re.search(rf"^FROM (--platform=\S+ )?{re.escape(name)}(\s|$)", variant.dockerfile, re.M)
    }


def template(name: str, variables: dict[str, Any], target: str) -> str:
    return render_template(REPO / "templates" / f"{name}.Dockerfile.j2", variables, target=target)


def naive(stack: str, **fields: str) -> Variant:
    return Variant("naive", NAIVE[stack].format(**fields), NAIVE_BASES)


def small_samples() -> list[Sample]:
    ex = REPO / "examples"
    static_vars = {"nginx_version": "1.22", "busybox_version": "1.35"}
    return [
        Sample(
            "go",
            "go",
            False,
            ex / "greeter",
            (
                Variant(
                    "template",
                    template("go", {"main": "./cmd/greeter", "go_version": "1.19"}, "greeter"),
                    TEMPLATE_BASES,
                ),
                naive("go", main="./cmd/greeter", binary="greeter"),
            ),
        ),
        Sample(
            "rust",
            "rust",
            False,
            ex / "rust",
            (
                Variant(
                    "template",
                    template("rust", {"rust_version": "1.63", "binary": "hello"}, "hello"),
                    TEMPLATE_BASES,
                ),
                naive("rust", binary="hello"),
            ),
        ),
        Sample(
            "cpp",
            "cpp",
            False,
            ex / "cpp",
            (
                Variant("template", template("cpp", {"binary": "hello"}, "hello"), TEMPLATE_BASES),
                Variant(
                    "template static",
                    template("cpp", {"binary": "hello", "static": True}, "hello"),
                    TEMPLATE_BASES,
                ),
                naive("cpp", binary="hello"),
            ),
        ),
        Sample(
            "python",
            "python",
            False,
            ex / "python",
            (
                Variant(
                    "template",
                    template("python", {"python_version": "3.11"}, "hello"),
                    TEMPLATE_BASES,
                ),
                naive("python"),
            ),
        ),
        Sample(
            "node",
            "node",
            False,
            ex / "node",
            (
                Variant(
                    "template", template("node", {"node_version": "18"}, "hello"), TEMPLATE_BASES
                ),
                naive("node"),
            ),
        ),
        Sample(
            "static",
            "static",
            False,
            ex / "static",
            (
                Variant(
                    "template nginx",
                    template("static", {"server": "nginx", **static_vars}, "site"),
                    TEMPLATE_BASES,
                ),
                Variant(
                    "template busybox",
                    template("static", {"server": "busybox", **static_vars}, "site"),
                    TEMPLATE_BASES,
                ),
                naive("static"),
            ),
            runs=False,  # a server: nothing to print
        ),
    ]


# ---------------------------------------------------------------------------------------
# Compile-heavy synthetic programs. Every generated function computes the same thing in
# the three languages (64-bit wrapping arithmetic), so the programs print one checksum.
# ---------------------------------------------------------------------------------------
GENERATED = "Code generated by bench/templates_vs_naive.py; DO NOT EDIT."
# units (go packages, rust modules, C files) x functions per unit, at --scale 1
HEAVY_SIZE = {"go": (45, 150), "rust": (6, 100), "cpp": (8, 100)}


@dataclass(frozen=True)
class Fn:
    a: int
    b: int
    c: int
    d: int
    e: int
    r1: int
    r2: int
    n: int


def functions(unit: int, count: int) -> list[Fn]:
    state = 0x243F6A8885A308D3 ^ (unit * 0x9E3779B97F4A7C15)

    def rnd() -> int:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        return state

    return [
        Fn(rnd() | 1, rnd(), rnd() | 1, rnd(), rnd(), 1 + rnd() % 31, 1 + rnd() % 62, 4 + rnd() % 8)
        for _ in range(count)
    ]


def gen_go(root: Path, units: int, per_unit: int) -> None:
    (root / "go.mod").write_text("module example.com/heavy\n\ngo 1.19\n")
    imports, calls = [], []
    for u in range(units):
        pkg = f"p{u:03d}"
        out = [f"// {GENERATED}\n\npackage {pkg}\n"]
        for i, f in enumerate(functions(u, per_unit)):
            out.append(
                f"""
func f{i}(x uint64) uint64 {{
	s := x*{f.a} + {f.b}
	for i := uint64(0); i < {f.n}; i++ {{
		switch (s + i) % 5 {{
		case 0:
			s = s*{f.c} + i
		case 1:
			s ^= s >> {f.r1}
		case 2:
			s += {f.d} * (i + 1)
		case 3:
			s = s<<{f.r2} | s>>{64 - f.r2}
		default:
			s -= x ^ {f.e}
		}}
	}}
	return s
}}
"""
            )
        body = "".join(f"\tt += f{i}(x)\n" for i in range(per_unit))
        out.append("\n// Sum adds up every function.\nfunc Sum(x uint64) uint64 {\n")
        out.append(f"\tvar t uint64\n{body}\treturn t\n}}\n")
        (root / pkg).mkdir()
        (root / pkg / f"{pkg}.go").write_text("".join(out))
        imports.append(f'\t"example.com/heavy/{pkg}"\n')
        calls.append(f"\tt += {pkg}.Sum(x)\n")
    (root / "main.go").write_text(
        f"// {GENERATED}\n\n// heavy: a compile-heavy synthetic program.\npackage main\n\n"
        'import (\n\t"fmt"\n\t"os"\n\n' + "".join(imports) + ")\n\n"
        "func main() {\n\tx := uint64(len(os.Args))\n\tvar t uint64\n"
        + "".join(calls)
        + f'\tfmt.Printf("heavy: {units}x{per_unit} functions, checksum %016x\\n", t)\n}}\n'
    )


def gen_rust(root: Path, units: int, per_unit: int) -> None:
    (root / "Cargo.toml").write_text(
        '[package]\nname = "heavy"\nversion = "0.1.0"\nedition = "2021"\n\n'
        "[dependencies]\n\n[profile.release]\nstrip = true\n"
    )
    (root / "Cargo.lock").write_text(
        "# This file is automatically @generated by Cargo.\n"
        "# It is not intended for manual editing.\nversion = 3\n\n"
        '[[package]]\nname = "heavy"\nversion = "0.1.0"\n'
    )
    (root / "src").mkdir()
    mods, calls = [], []
    for u in range(units):
        mod = f"m{u:03d}"
        out = [f"// {GENERATED}\n"]
        for i, f in enumerate(functions(u, per_unit)):
            out.append(
                f"""
fn f{i}(x: u64) -> u64 {{
    (0..{f.n}u64).fold(x.wrapping_mul({f.a}).wrapping_add({f.b}), |s, i| {{
        match s.wrapping_add(i) % 5 {{
            0 => s.wrapping_mul({f.c}).wrapping_add(i),
            1 => s ^ (s >> {f.r1}),
            2 => s.wrapping_add({f.d}u64.wrapping_mul(i + 1)),
            3 => s.rotate_left({f.r2}),
            _ => s.wrapping_sub(x ^ {f.e}),
        }}
    }})
}}
"""
            )
        body = "".join(f"    t = t.wrapping_add(f{i}(x));\n" for i in range(per_unit))
        out.append(f"\npub fn sum(x: u64) -> u64 {{\n    let mut t = 0u64;\n{body}    t\n}}\n")
        (root / "src" / f"{mod}.rs").write_text("".join(out))
        mods.append(f"mod {mod};\n")
        calls.append(f"    t = t.wrapping_add({mod}::sum(x));\n")
    (root / "src" / "main.rs").write_text(
        f"// {GENERATED}\n//! heavy: a compile-heavy synthetic program.\n\n"
        + "".join(mods)
        + "\nfn main() {\n    let x = std::env::args().count() as u64;\n    let mut t = 0u64;\n"
        + "".join(calls)
        + f'    println!("heavy: {units}x{per_unit} functions, checksum {{:016x}}", t);\n}}\n'
    )


def gen_c(root: Path, units: int, per_unit: int) -> None:
    (root / "Makefile").write_text(
        f"# {GENERATED}\nCC ?= cc\nCFLAGS ?= -O2 -Wall\n\n"
        "SRCS := $(wildcard src/*.c)\nOBJS := $(SRCS:.c=.o)\n\n"
        "heavy: $(OBJS)\n\t$(CC) $(CFLAGS) -o $@ $(OBJS) $(LDFLAGS)\n\n"
        "%.o: %.c src/heavy.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\n"
        "clean:\n\trm -f heavy src/*.o\n\n.PHONY: clean\n"
    )
    (root / "src").mkdir()
    decls = "".join(f"uint64_t sum_{u:03d}(uint64_t x);\n" for u in range(units))
    (root / "src" / "heavy.h").write_text(f"/* {GENERATED} */\n#include <stdint.h>\n{decls}")
    for u in range(units):
        out = [f'/* {GENERATED} */\n#include "heavy.h"\n']
        for i, f in enumerate(functions(u, per_unit)):
            out.append(
                f"""
static uint64_t f{i}(uint64_t x) {{
    uint64_t s = x * {f.a}ULL + {f.b}ULL;
    for (uint64_t i = 0; i < {f.n}; i++) {{
        switch ((s + i) % 5) {{
        case 0: s = s * {f.c}ULL + i; break;
        case 1: s ^= s >> {f.r1}; break;
        case 2: s += {f.d}ULL * (i + 1); break;
        case 3: s = (s << {f.r2}) | (s >> {64 - f.r2}); break;
        default: s -= x ^ {f.e}ULL; break;
        }}
    }}
    return s;
}}
"""
            )
        body = "".join(f"    t += f{i}(x);\n" for i in range(per_unit))
        out.append(f"\nuint64_t sum_{u:03d}(uint64_t x) {{\n    uint64_t t = 0;\n{body}")
        out.append("    return t;\n}\n")
        (root / "src" / f"f{u:03d}.c").write_text("".join(out))
    calls = "".join(f"    t += sum_{u:03d}(x);\n" for u in range(units))
    (root / "src" / "main.c").write_text(
        f"/* {GENERATED} */\n/* heavy: a compile-heavy synthetic program. */\n"
        '#include <inttypes.h>\n#include <stdio.h>\n#include "heavy.h"\n\n'
        "int main(int argc, char **argv) {\n    (void)argv;\n"
        "    uint64_t x = (uint64_t)argc, t = 0;\n"
        + calls
        + f'    printf("heavy: {units}x{per_unit} functions, checksum %016" PRIx64 "\\n", t);\n'
        "    return 0;\n}\n"
    )


def heavy_samples(root: Path, stacks: Sequence[str], scale: float) -> list[Sample]:
    generators = {"go": gen_go, "rust": gen_rust, "cpp": gen_c}
    samples = []
    for stack in ("go", "rust", "cpp"):
        if stack not in stacks:
            continue
        units, per_unit = HEAVY_SIZE[stack]
        units = max(1, round(units * scale))
        name = f"{'c' if stack == 'cpp' else stack}-heavy"
        folder = root / name
        folder.mkdir()
        generators[stack](folder, units, per_unit)
        if stack == "go":
            tpl = template("go", {"main": ".", "go_version": "1.19"}, "heavy")
            nv = naive("go", main=".", binary="heavy")
        elif stack == "rust":
            tpl = template("rust", {"rust_version": "1.63", "binary": "heavy"}, "heavy")
            nv = naive("rust", binary="heavy")
        else:
            tpl = template("cpp", {"binary": "heavy"}, "heavy")
            nv = naive("cpp", binary="heavy")
        samples.append(
            Sample(name, stack, True, folder, (Variant("template", tpl, TEMPLATE_BASES), nv))
        )
    return samples


def source_lines(folder: Path) -> int:
    return sum(
        len(p.read_text().splitlines())
        for p in folder.rglob("*")
        if p.suffix in {".go", ".rs", ".c", ".h"}
    )


# ---------------------------------------------------------------------------------------
# Building and measuring
# ---------------------------------------------------------------------------------------
@dataclass
class Result:
    sample: str
    stack: str
    heavy: bool
    platform: str
    variant: str
    wall_s: float
    step_s: float | None
    export_s: float | None
    size_bytes: int
    layers: int
    output: str = ""
    ref: str = ""


def when(stamp: str) -> float:
    # RFC 3339 with nanoseconds: keep microseconds for fromisoformat
    match = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    if not match:
        raise ValueError(stamp)
    frac = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + frac + zone).timestamp()


def step_times(rawjson: str) -> dict[str, float]:
    """BuildKit step name -> seconds, from `--progress=rawjson` (last start to last end)."""
    started: dict[str, float] = {}
    completed: dict[str, float] = {}
    names: dict[str, str] = {}
    for line in rawjson.splitlines():
        if not line.startswith("{"):
            continue
        for vertex in json.loads(line).get("vertexes") or []:
            digest = vertex["digest"]
            names[digest] = vertex.get("name", "")
            if "started" in vertex:
                started[digest] = when(vertex["started"])
            if "completed" in vertex:
                completed[digest] = when(vertex["completed"])
    return {names[d]: completed[d] - started[d] for d in completed if d in started and d in names}


def image_size(ref: str, platform: str) -> tuple[int, int]:
    manifest = json.loads(sh("crane", "manifest", ref).stdout)
    if "manifests" in manifest:  # an index: pick the platform's image
        arch = platform.split("/")[1]
        digest = next(
            m["digest"] for m in manifest["manifests"] if m["platform"]["architecture"] == arch
        )
        manifest = json.loads(sh("crane", "manifest", f"{ref.rsplit(':', 1)[0]}@{digest}").stdout)
    return sum(layer["size"] for layer in manifest["layers"]), len(manifest["layers"])


def build(sample: Sample, variant: Variant, platform: str, *, prune: bool) -> Result:
    slug = variant.label.replace(" ", "-")
    ref = f"{REGISTRY}/bench/{sample.name}-{slug}:{platform.replace('/', '-')}"
    if prune:
        # The templates' cache mounts (go-build, cargo target, apt) must not carry an
        # earlier build's work. --no-cache hides them on this BuildKit; this makes sure.
        sh("docker", "buildx", "prune", "--force", "--filter", "type=exec.cachemount")
    with tempfile.TemporaryDirectory() as tmp:
        dockerfile = Path(tmp) / "Dockerfile"
        dockerfile.write_text(variant.dockerfile)
        contexts = [
            arg
            for name, image in used(variant).items()
            for arg in ("--build-context", f"{name}=docker-image://{image}")
        ]
        cmd = [
            "docker",
            "buildx",
            "build",
            "--no-cache",
            "--provenance=false",
            "--progress=rawjson",
            "--platform",
            platform,
            *contexts,
            "-f",
            str(dockerfile),
            "--output",
            f"type=image,name={ref},push=true",
            str(sample.context),
        ]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]
        logs = "".join(
            bytes_from_logs(line) for line in done.stderr.splitlines() if line.startswith("{")
        )
        sys.exit(
            f"{sample.name} {variant.label} {platform}: build failed\n{logs[-3000:]}\n"
            + "\n".join(errors[-20:])
        )
    steps = step_times(done.stderr)
    pattern = STEP.get(sample.stack)
    step = sum(s for n, s in steps.items() if pattern.search(n)) if pattern else None
    export = sum(s for n, s in steps.items() if n.startswith("exporting to image")) or None
    size, layers = image_size(ref, platform)
    output = ""
    if sample.runs:
        ran = sh("docker", "run", "--rm", "--platform", platform, ref)
        output = (ran.stdout.splitlines() or [""])[0]
    return Result(
        sample.name,
        sample.stack,
        sample.heavy,
        platform,
        variant.label,
        wall,
        step,
        export,
        size,
        layers,
        output,
        ref,
    )


def bytes_from_logs(line: str) -> str:
    return "".join(
        base64.b64decode(log.get("data", "")).decode(errors="replace")
        for log in json.loads(line).get("logs") or []
    )


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
COMPILED = ("go", "rust", "cpp")


def how(result: Result) -> str:
    """How the compile step ran: cross-compiled on the build platform, or emulated."""
    if result.stack not in COMPILED or result.platform == "linux/amd64":
        return result.variant
    return f"{result.variant} ({'emulated' if result.variant == 'naive' else 'cross'})"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_mib(size: int) -> str:
    mib = size / 2**20
    return f"{mib:.2f} MiB" if mib < 1 else f"{mib:.1f} MiB"


def line(result: Result) -> str:
    return (
        f"{result.sample:12} {result.platform:12} {how(result):24} wall {result.wall_s:6.1f} s"
        f"   step {fmt_s(result.step_s):>6} s   export {fmt_s(result.export_s):>5} s"
        f"   image {fmt_mib(result.size_bytes):>10} ({result.layers} layers)"
    )


def markdown(results: Sequence[Result]) -> str:
    rows = [
        "| sample | platform | Dockerfile | wall s | step s | export s | image (compressed) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows += [
        f"| {r.sample} | {r.platform} | {how(r)} | {r.wall_s:.1f} | {fmt_s(r.step_s)} "
        f"| {fmt_s(r.export_s)} | {fmt_mib(r.size_bytes)} |"
        for r in results
    ]
    return "\n".join(rows)


def cross_vs_emulated(results: Sequence[Result]) -> list[str]:
    out = []
    for sample in dict.fromkeys(r.sample for r in results if r.stack in COMPILED):
        arm = {r.variant: r for r in results if r.sample == sample and r.platform == "linux/arm64"}
        tpl, nv = arm.get("template"), arm.get("naive")
        if not (tpl and nv and tpl.step_s and nv.step_s):
            continue
        out.append(
            f"{sample:12} arm64 compile step: cross {tpl.step_s:6.1f} s, emulated "
            f"{nv.step_s:6.1f} s ({nv.step_s / tpl.step_s:4.1f}x); whole build: cross "
            f"{tpl.wall_s:6.1f} s, emulated {nv.wall_s:6.1f} s ({nv.wall_s / tpl.wall_s:4.1f}x)"
        )
    return out


def check_outputs(results: Sequence[Result]) -> list[str]:
    """On each platform, every image of a sample must print the same first line."""
    problems = []
    for sample in dict.fromkeys(r.sample for r in results):
        for platform in dict.fromkeys(r.platform for r in results):
            outputs = {
                r.variant: r.output
                for r in results
                if r.sample == sample and r.platform == platform
            }
            if len(set(outputs.values())) > 1:
                problems.append(f"{sample} {platform}: outputs differ: {outputs}")
    return problems


def note(message: str) -> None:
    print(f"# {message}", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build each sample app with mab's template and with a naive single-stage "
        "Dockerfile, for linux/amd64 and linux/arm64, with --no-cache; print build times and "
        "compressed image sizes.",
        epilog="Needs root, the engine with QEMU and the registry (scripts/engine-up), the "
        "mirrors (scripts/make-mirrors), crane, mmdebstrap and arch-test. First run: the bench "
        "base images are made and pushed once (several minutes).",
    )
    parser.add_argument(
        "--stacks",
        default=",".join(STACKS),
        help=f"comma-separated stacks to benchmark (default: {','.join(STACKS)}; c = cpp)",
    )
    parser.add_argument(
        "--small",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the small sample apps in examples/ (default: on)",
    )
    parser.add_argument(
        "--heavy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the compile-heavy generated samples of go, rust and cpp (default: on)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the heavy samples' number of packages/modules/files (default: 1)",
    )
    parser.add_argument(
        "--platforms",
        default=",".join(PLATFORMS),
        help=f"comma-separated platforms (default: {','.join(PLATFORMS)})",
    )
    parser.add_argument(
        "--keep-cache-mounts",
        action="store_true",
        help="do not empty the builder's cache mounts before each build (default: emptied, "
        "so that a template cannot reuse an earlier build's go-build or cargo cache even "
        "where --no-cache does not hide them; this empties every project's cache mounts)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--print-dockerfiles",
        action="store_true",
        help="print every Dockerfile of the selected samples and build nothing",
    )
    args = parser.parse_args(argv)
    stacks = [{"c": "cpp", "c++": "cpp"}.get(s.strip(), s.strip()) for s in args.stacks.split(",")]
    unknown = sorted(set(stacks) - set(STACKS))
    if unknown:
        parser.error(f"unknown stack(s): {', '.join(unknown)} (known: {', '.join(STACKS)})")
    args.stacks = [s for s in STACKS if s in stacks]
    args.platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    if not args.platforms or set(args.platforms) - set(PLATFORMS):
        # the bench's own build images exist for these two only
        parser.error(f"--platforms: choose among {', '.join(PLATFORMS)}")
    if not (args.small or args.heavy):
        parser.error("--no-small and --no-heavy leave nothing to build")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mab-bench-") as tmp:
        samples = [s for s in small_samples() if s.stack in args.stacks] if args.small else []
        if args.heavy:
            samples += heavy_samples(Path(tmp), args.stacks, args.scale)
        if args.print_dockerfiles:
            for sample in samples:
                for variant in sample.variants:
                    print(f"# ===== {sample.name}: {variant.label} =====\n{variant.dockerfile}")
            return 0
        for sample in samples:
            if sample.heavy:
                note(f"{sample.name}: {source_lines(sample.context)} generated source lines")
        needed = {image for s in samples for v in s.variants for image in used(v).values()}
        for base in BENCH_BASES:
            if base.ref in needed:
                ensure_base(base)
        note(
            f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: {len(samples)} samples, "
            f"platforms {', '.join(args.platforms)}"
        )
        results: list[Result] = []
        for sample in samples:
            for platform in args.platforms:
                for variant in sample.variants:
                    result = build(sample, variant, platform, prune=not args.keep_cache_mounts)
                    results.append(result)
                    print(line(result), flush=True)
    total = time.perf_counter() - started
    print()
    print(markdown(results))
    print()
    for text in cross_vs_emulated(results):
        print(text)
    for name in dict.fromkeys(r.sample for r in results if r.output):
        outs = sorted({r.output for r in results if r.sample == name})
        print(f"{name:12} prints: {' | '.join(outs)}")
    problems = check_outputs(results)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"\ntotal {total / 60:.1f} min")
    if args.json:
        args.json.write_text(
            json.dumps({"total_s": total, "results": [asdict(r) for r in results]}, indent=2) + "\n"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
