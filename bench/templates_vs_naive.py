#!/usr/bin/env python3
"""Benchmark: mab's go template against a naive single-stage Dockerfile, same app.

The app is examples/greeter (a small Go program). For linux/amd64 and linux/arm64 each
Dockerfile is built with --no-cache and pushed to the local registry; printed: wall time
of the build and the image's compressed size (sum of its layers, read back with crane).

- template: templates/go.Dockerfile.j2 rendered by mab: the compiler runs on the build
  platform and cross-compiles (GOARCH), the image is scratch + one static binary;
- naive: FROM golang, COPY . ., go build, CMD: on arm64 the compiler runs under QEMU and
  the whole toolchain ships in the image.

Offline: the golang base is made from Debian packages (mmdebstrap; Go 1.19) for amd64 and
arm64 and pushed as localhost:5000/bench/golang:1.19-bookworm; the arm64 rootfs takes
about 5 minutes the first time (its package scripts run under QEMU) and is cached in
/var/cache/mab-mirrors.

    python bench/templates_vs_naive.py

Needs the engine, QEMU and the registry (scripts/engine-up), mmdebstrap and arch-test
(apt-get install arch-test: mmdebstrap wants it for foreign architectures). Root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mab.render import render_template  # noqa: E402

CACHE = Path("/var/cache/mab-mirrors")
BASE = "localhost:5000/bench/golang:1.19-bookworm"
APP = REPO / "examples" / "greeter"
NAIVE = """\
FROM golang:1.19-bookworm
WORKDIR /src
COPY . .
RUN go build -o /usr/local/bin/greeter ./cmd/greeter
CMD ["greeter"]
"""
BASE_DOCKERFILE = """\
FROM scratch
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
ENV GOPATH=/go GOCACHE=/root/.cache/go-build CGO_ENABLED=0 \\
    PATH=/go/bin:/usr/lib/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
"""


def sh(*cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return done


def debian_mirror() -> str:
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        match = re.search(r"^URIs:\s*(\S+)", path.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    sys.exit("no Debian mirror found in /etc/apt/sources.list.d/*.sources")


def rootfs(arch: str) -> Path:
    tar = CACHE / f"golang-1.19-bookworm-{arch}.tar"
    if not tar.exists():
        print(f"making the {arch} golang rootfs with mmdebstrap (slow under QEMU)...", flush=True)
        sh(
            "mmdebstrap",
            "--variant=minbase",
            f"--architectures={arch}",
            "--format=tar",
            "--include=golang-go,ca-certificates",
            "bookworm",
            str(tar),
            debian_mirror(),
        )
    return tar


def ensure_base() -> None:
    if subprocess.run(["crane", "digest", BASE], check=False, capture_output=True).returncode == 0:
        return
    # hard links (a build context sends a symlink as a link), so the folder is on CACHE's fs
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        for arch in ("amd64", "arm64"):
            os.link(rootfs(arch), Path(tmp) / f"rootfs-{arch}.tar")
        (Path(tmp) / "Dockerfile").write_text(BASE_DOCKERFILE)
        sh(
            "docker",
            "buildx",
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "--provenance=false",
            "--output",
            f"type=image,name={BASE},push=true,compression=gzip,compression-level=1",
            tmp,
        )


def build(dockerfile: str, platform: str, name: str) -> tuple[float, int]:
    ref = f"localhost:5000/bench/greeter-{name}:{platform.replace('/', '-')}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Dockerfile"
        path.write_text(dockerfile)
        start = time.perf_counter()
        sh(
            "docker",
            "buildx",
            "build",
            "--no-cache",
            "--provenance=false",
            "--platform",
            platform,
            "--build-context",
            f"golang:1.19-bookworm=docker-image://{BASE}",
            "-f",
            str(path),
            "--output",
            f"type=image,name={ref},push=true",
            str(APP),
        )
        wall = time.perf_counter() - start
    manifest = json.loads(sh("crane", "manifest", ref).stdout)
    return wall, sum(layer["size"] for layer in manifest["layers"])


def main() -> None:
    ensure_base()
    template = render_template(
        REPO / "templates" / "go.Dockerfile.j2",
        {"main": "./cmd/greeter", "go_version": "1.19"},
        target="greeter",
    )
    rows = []
    for platform in ("linux/amd64", "linux/arm64"):
        for name, text in (("template", template), ("naive", NAIVE)):
            wall, size = build(text, platform, name)
            rows.append((platform, name, wall, size))
            print(
                f"{platform:12} {name:9} build {wall:6.1f} s   image {size / 2**20:8.1f} MiB "
                "compressed",
                flush=True,
            )


if __name__ == "__main__":
    main()
