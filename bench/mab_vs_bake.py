#!/usr/bin/env python3
"""Benchmark: `mab build` against `docker buildx bake --push`, each on its defaults.

Both build the repository's demo (builds.yaml: greeter, cross-compiled Go, and hello, a
busybox runtime image; linux/amd64, linux/arm64 and linux/arm/v7) from a copy of its
examples/ folder, and push to the local registry, each into its own repository path. The
bake file is written from mab's own plan (same contexts, rendered Dockerfiles, build
args, named base-image contexts, platforms), so only the tool differs. Neither tool gets
a switch the other lacks: mab runs with builds.yaml's defaults (its registry cache is
imported, and exported only in CI), bake with `--push`. Tags are `latest` only, so a
changed target may republish (an immutable tag would refuse other content).

Runs, in alternating order per round (bake first in odd rounds, mab first in even ones):
- cold: BuildKit's cache pruned, a fresh registry path;
- warm: the same build again, nothing changed;
- changed: one file of one target (hello) changed, then the build.
Prints each run's wall time, the medians and mab/bake ratios, and peak memory (GNU time's
%M: the largest single process of the run, not the sum over the process tree).

    python bench/mab_vs_bake.py [--rounds N] [--builder NAME | --container]

``--container``: both tools on one docker-container builder (what docker/setup-buildx-action
makes; BuildKit pushes by digest itself), made from scripts/buildkit-up's BuildKit image and
removed at the end; cold prunes that builder's cache.

mab runs as a user installs it: `pip install` of this tree into a fresh venv made first.
Needs the engine, QEMU, the registry and the mirror images (scripts/demo sets them up).
Run it alone: the machine has 2 cores.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mab.config.project import load_project  # noqa: E402
from mab.pipeline.build import render_dockerfiles  # noqa: E402
from mab.planning.plan import make_plan  # noqa: E402

TOOLS = ("docker buildx bake", "mab build")


def workspace(root: Path) -> Path:
    """A copy of the demo (examples/ and a builds.yaml whose tags are `latest` only)."""
    shutil.copytree(REPO / "examples", root / "examples")
    text = (REPO / "builds.yaml").read_text()
    lines = [
        line[: line.index("tags:")] + "tags: [latest]" if line.strip().startswith("tags:") else line
        for line in text.splitlines()
    ]
    path = root / "builds.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def with_registry(path: Path, registry: str) -> Path:
    text = path.read_text()
    lines = [
        f"registry: {registry}" if ln.startswith("registry:") else ln for ln in text.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def bake_file(builds: Path, out: Path, registry: str, builder: str | None) -> Path:
    plan = make_plan(load_project(builds))
    dockerfiles = render_dockerfiles(plan, out)
    targets = {}
    for t in plan.targets:
        targets[t.name] = {
            "context": str(t.context),
            "dockerfile": str(dockerfiles[t.name]),
            "platforms": [str(p) for p in t.platforms],
            "args": dict(t.build_args),
            "contexts": dict(t.build_contexts),
            "tags": [f"{registry}/{t.name}:latest"],
            **({"target": t.stage} if t.stage else {}),
        }
    path = out / "docker-bake.json"
    path.write_text(
        json.dumps({"group": {"default": {"targets": list(targets)}}, "target": targets}, indent=2)
    )
    return path


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of *cmd*; fails loudly on a non-zero exit."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-o", rss.name, "-f", "%M", *cmd],
            check=False,
            capture_output=True,
            text=True,
            cwd=cwd,
            env={k: v for k, v in os.environ.items() if k != "CI"},  # a developer's run
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return wall, int(rss.read().strip().splitlines()[-1])


def prune(builder: str | None) -> None:
    cmd = ["docker", "buildx", "prune", "-af"] + (["--builder", builder] if builder else [])
    subprocess.run(cmd, check=True, capture_output=True)


def installed_mab(root: Path) -> Path:
    """mab as a user installs it: ``pip install`` of this tree into a fresh venv (runtime
    dependencies only, bytecode compiled by pip), not the editable dev venv, whose test
    tools change what mab's dependencies import (with click installed, httpx loads its own
    CLI: +0.1 s) and whose PYTHONDONTWRITEBYTECODE, where set, recompiles mab every run."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(REPO)], check=True
    )
    return venv / "bin" / "mab"


def commands(
    work: Path, builds: Path, bake: Path, builder: str | None, mab: Path
) -> dict[str, list[str]]:
    bake_cmd = ["docker", "buildx", "bake", f"--allow=fs.read={work}", "-f", str(bake), "--push"]
    mab_cmd = [str(mab), "build", "-f", str(builds)]
    if builder:
        bake_cmd += ["--builder", builder]
        mab_cmd += ["--builder", builder]
    return {"docker buildx bake": bake_cmd, "mab build": mab_cmd}


def container_builder() -> str:
    """A docker-container builder (what docker/setup-buildx-action makes) running the
    BuildKit image scripts/buildkit-up made, on the host network, with its buildkitd.toml
    (plain HTTP to the local registry); bootstrapped. Needs root (buildkit-up)."""
    state = Path("/etc/mab-engine/buildkit-up.json")
    if not state.is_file():
        subprocess.run([str(REPO / "scripts" / "buildkit-up"), "--quiet"], check=True)
    info = json.loads(state.read_text())
    name = f"mab-bench-container-{os.getpid()}"
    subprocess.run(
        [
            *["docker", "buildx", "create", "--name", name, "--driver", "docker-container"],
            *["--driver-opt", f"image={info['image']}", "--driver-opt", "network=host"],
            *["--buildkitd-config", info["container_config"]],
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(["docker", "buildx", "inspect", "--bootstrap", name], check=True)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--builder", help="a buildx builder for both tools (default: current)")
    parser.add_argument(
        "--container",
        action="store_true",
        help="make a docker-container builder for both tools (removed at the end)",
    )
    args = parser.parse_args()
    install = Path(tempfile.mkdtemp(prefix="mab-bench-install-"))
    atexit.register(shutil.rmtree, install, ignore_errors=True)
    mab = installed_mab(install)
    if args.container:
        args.builder = container_builder()
        atexit.register(subprocess.run, ["docker", "buildx", "rm", args.builder], check=False)
    results: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for round_ in range(args.rounds):
        order = TOOLS if round_ % 2 == 0 else tuple(reversed(TOOLS))
        for kind in ("cold", "warm", "changed"):
            for tool in order:
                results.setdefault((tool, kind), [])
        work = {tool: Path(tempfile.mkdtemp(prefix="mab-bench-")) for tool in TOOLS}
        setups = {}
        for tool in TOOLS:
            registry = f"localhost:5000/bench{uuid.uuid4().hex[:6]}"
            builds = with_registry(workspace(work[tool]), registry)
            bake = bake_file(builds, work[tool], registry, args.builder)
            setups[tool] = commands(work[tool], builds, bake, args.builder, mab)[tool]
        for kind in ("cold", "warm", "changed"):
            for tool in order:
                if kind == "cold":
                    prune(args.builder)
                if kind == "changed":  # hello.sh is COPYed: a real change of one target
                    script = work[tool] / "examples" / "hello" / "hello.sh"
                    script.write_text(script.read_text() + f"# round {round_}\n")
                results[(tool, kind)].append(timed(setups[tool], work[tool]))
        for folder in work.values():
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{'tool':20} {'run':8} {'median s':>9} {'runs':>28} {'max RSS MiB':>12}")
    medians: dict[tuple[str, str], float] = {}
    for (tool, kind), runs in results.items():
        walls = [w for w, _ in runs]
        medians[(tool, kind)] = statistics.median(walls)
        rss = max(r for _, r in runs) / 1024
        shown = ", ".join(f"{w:.2f}" for w in walls)
        print(f"{tool:20} {kind:8} {medians[(tool, kind)]:9.2f} {shown:>28} {rss:12.0f}")
    for kind in ("cold", "warm", "changed"):
        ratio = medians[("mab build", kind)] / medians[("docker buildx bake", kind)]
        print(f"mab/bake {kind}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
