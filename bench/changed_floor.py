#!/usr/bin/env python3
"""Benchmark: where the "one target changed" run's time goes, against its floor.

Issue 11 asks that `mab build` with one target changed take at most bake's time. This
measures, on the same workspace as bench/mab_vs_bake.py (the demo, `latest` tags, hello.sh
changed before every run), each part that such a run cannot do without, alone:

- bake: `docker buildx bake --push`, all targets (the peer's changed run, as in
  mab_vs_bake.py);
- bake, changed target: `docker buildx bake hello --push`, the changed target alone: one
  buildx process building it, as bake would push it (by tag);
- buildx, changed target, OCI: the same build written as an OCI layout, what mab asks of
  the docker driver (which cannot push by digest), before mab uploads it;
- mab plan --check: mab's start-up, builds.yaml, the input digests and the unchanged check
  of every target against the registry, with no engine (what tells that greeter is
  unchanged);
- imagetools inspect: one `docker buildx imagetools inspect` of the changed index, what
  verification asks of the registry before a tag moves;
- mab build: the whole changed run.

The floor is the sum of the three parts mab's design needs (the unchanged check, one buildx
build of the changed target, one verification read), with nothing of mab's own in between:
if it is above bake's whole run, no orchestration code can meet the goal without dropping
one of them.

    python bench/mab_vs_bake.py is the comparison; this is its breakdown:
    python bench/changed_floor.py [--rounds N]

Needs the engine, QEMU, the registry and the mirror images (scripts/demo sets them up). Run
it alone: the machine has 2 cores.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mab_vs_bake import bake_file, installed_mab, with_registry, workspace


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a developer's run
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=cwd, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mab-floor-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    mab = installed_mab(root / "install")
    work = root / "work"
    work.mkdir()
    # each tool its own repository path, as in mab_vs_bake.py: a tag bake moved would make
    # mab's unchanged check rebuild
    registry, peers = (f"localhost:5000/floor{uuid.uuid4().hex[:6]}" for _ in range(2))
    builds = with_registry(workspace(work), registry)
    bake = bake_file(builds, work, peers, None)
    allow = f"--allow=fs.read={work}"
    oci = work / "oci"
    runs = {
        "bake (all targets)": ["docker", "buildx", "bake", allow, "-f", str(bake), "--push"],
        "bake hello (changed target)": [
            *["docker", "buildx", "bake", allow, "-f", str(bake), "--push", "hello"],
        ],
        "buildx hello, OCI layout": [
            *["docker", "buildx", "bake", allow, "-f", str(bake), "hello"],
            *["--set", f"hello.output=type=oci,tar=false,dest={oci}"],
        ],
        "mab plan --check": [str(mab), "plan", "--check", "-f", str(builds)],
        "imagetools inspect": [
            *["docker", "buildx", "imagetools", "inspect", f"{registry}/hello:latest"],
            *["--format", '{"manifest":{{json .Manifest}},"image":{{json .Image}}}'],
        ],
        "mab build": [str(mab), "build", "-f", str(builds)],
    }
    # fill BuildKit's cache and publish both targets once
    timed(runs["mab build"], work)
    timed(runs["bake (all targets)"], work)
    script = work / "examples" / "hello" / "hello.sh"
    results: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
        for name in order:
            script.write_text(script.read_text() + f"# {name} {round_}\n")  # hello changed
            shutil.rmtree(oci, ignore_errors=True)
            results[name].append(timed(runs[name], work))
    print(f"{'run':30} {'median s':>9}  runs")
    medians = {name: statistics.median(walls) for name, walls in results.items()}
    for name, walls in results.items():
        print(f"{name:30} {medians[name]:9.2f}  {', '.join(f'{w:.2f}' for w in walls)}")
    floor = (
        medians["mab plan --check"]
        + medians["buildx hello, OCI layout"]
        + medians["imagetools inspect"]
    )
    peer = medians["bake (all targets)"]
    print(f"floor (check + one build + one verification read): {floor:.2f} s, {floor / peer:.2f}x")
    print(f"mab build: {medians['mab build']:.2f} s, {medians['mab build'] / peer:.2f}x bake")


if __name__ == "__main__":
    main()
