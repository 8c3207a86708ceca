#!/usr/bin/env python3
"""Benchmark: `mab build` against `docker buildx bake` on the same Dockerfiles.

Both build the repository's demo (builds.yaml: greeter, cross-compiled Go, and hello, a
busybox runtime image; linux/amd64, linux/arm64 and linux/arm/v7) and push to the local
registry, each into its own repository path. The bake file is written from mab's own plan
(same contexts, rendered Dockerfiles, build args, named base-image contexts, platforms,
tags), so only the tool differs.

Runs, for each tool: cold (BuildKit cache pruned first) and warm (nothing changed). Prints
wall time and peak memory (GNU time's %M: the max RSS of the largest single process of
the run, not the sum over the process tree).

    python bench/mab_vs_bake.py [--rounds N]

Needs the engine, QEMU, the registry and the mirror images (scripts/demo sets them up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mab.config.models import load_project  # noqa: E402
from mab.pipeline.build import render_dockerfiles  # noqa: E402
from mab.planning.plan import make_plan  # noqa: E402


def bake_file(out: Path, registry: str) -> Path:
    plan = make_plan(load_project(REPO / "builds.yaml"))
    dockerfiles = render_dockerfiles(plan, out)
    targets = {}
    for t in plan.targets:
        targets[t.name] = {
            "context": str(t.context),
            "dockerfile": str(dockerfiles[t.name]),
            "platforms": [str(p) for p in t.platforms],
            "args": dict(t.build_args),
            "contexts": dict(t.build_contexts),
            "tags": [f"{registry}/{t.name}:{tag}" for tag in t.tag_names],
            **({"target": t.stage} if t.stage else {}),
            "output": ["type=registry"],
        }
    path = out / "docker-bake.json"
    path.write_text(
        json.dumps({"group": {"default": {"targets": list(targets)}}, "target": targets}, indent=2)
    )
    return path


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of *cmd*; fails loudly on a non-zero exit."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-o", rss.name, "-f", "%M", *cmd],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return wall, int(rss.read().strip().splitlines()[-1])


def prune() -> None:
    subprocess.run(["docker", "builder", "prune", "-af"], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mab-bench-"))
    bake = bake_file(work, "localhost:5000/bench-bake")
    mab_yaml = work / "builds.yaml"
    text = (
        (REPO / "builds.yaml")
        .read_text()
        .replace("localhost:5000/mab-demo", "localhost:5000/bench-mab")
    )
    text = text.replace("context: examples/", f"context: {REPO}/examples/")
    mab_yaml.write_text(text)
    # the project's cache would also speed mab up on cold runs; compare BuildKit to BuildKit
    mab_yaml.write_text(text + "cache: {type: none}\n")
    env = {**os.environ, "CI": "true"}
    tools = {
        "docker buildx bake": [
            "docker",
            "buildx",
            "bake",
            f"--allow=fs.read={work}",
            "-f",
            str(bake),
            "--progress",
            "plain",
        ],
        "mab build": [sys.executable, "-m", "mab", "build", "-f", str(mab_yaml)],
    }
    results: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for _ in range(args.rounds):
        for name, cmd in tools.items():
            prune()
            results.setdefault((name, "cold"), []).append(timed(cmd, env))
            results.setdefault((name, "warm"), []).append(timed(cmd, env))
    print(f"{'tool':22} {'run':5} {'wall s (median)':>16} {'runs':>24} {'max RSS MiB':>12}")
    for (name, kind), runs in results.items():
        walls = [w for w, _ in runs]
        rss = max(r for _, r in runs) / 1024
        shown = ", ".join(f"{w:.1f}" for w in walls)
        print(f"{name:22} {kind:5} {statistics.median(walls):16.1f} {shown:>24} {rss:12.0f}")


if __name__ == "__main__":
    main()
