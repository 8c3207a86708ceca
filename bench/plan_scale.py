#!/usr/bin/env python3
"""Benchmark: `mab plan` and `mab tags` on a big builds.yaml (issue 11's goal: each under
1 s of wall time for 2,000 targets x 3 platforms).

Writes a builds.yaml of N targets (one shared context, two tags each: a version and
latest, three platforms) into a temporary folder and times each command R times, with
mab as a user installs it (a fresh venv with this tree pip-installed) unless --mab names
a mab command. No engine, no registry: these commands touch neither.

    python bench/plan_scale.py [--targets 2000] [--runs 5] [--mab PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from mab_vs_bake import installed_mab  # mab as a user installs it

COMMANDS = (["plan"], ["plan", "--json"], ["tags"], ["tags", "--json"])


def write_project(root: Path, targets: int) -> Path:
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile").write_text("FROM busybox\n")
    lines = [
        "registry: localhost:5000/big",
        "platforms: [linux/amd64, linux/arm64, linux/arm/v7]",
        "targets:",
        *(f'  t{i}: {{context: ctx, tags: ["1.0.{i}", latest]}}' for i in range(targets)),
    ]
    path = root / "builds.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mab", help="the mab command to time (default: a fresh install)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mab-plan-scale-") as tmp:
        root = Path(tmp)
        mab = Path(args.mab) if args.mab else installed_mab(root)
        project = write_project(root, args.targets)
        print(f"{args.targets} targets x 3 platforms; {args.runs} runs each; wall seconds")
        for command in COMMANDS:
            walls = []
            for _ in range(args.runs):
                start = time.perf_counter()
                subprocess.run(
                    [str(mab), *command, "-f", str(project)],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    cwd=root,
                )
                walls.append(time.perf_counter() - start)
            shown = ", ".join(f"{w:.2f}" for w in walls)
            print(f"mab {' '.join(command):12} median {statistics.median(walls):.2f}  ({shown})")


if __name__ == "__main__":
    main()
