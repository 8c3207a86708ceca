#!/usr/bin/env python3
"""Benchmark: `mab build` against `docker buildx bake` on the same Dockerfiles.

Both build the repository's demo (builds.yaml: greeter, cross-compiled Go, and hello, a
busybox runtime image; linux/amd64, linux/arm64 and linux/arm/v7) and push to the local
registry, each into its own repository path. The bake file is written from mab's own plan
(same contexts, rendered Dockerfiles, build args, named base-image contexts, platforms,
tags), so only the tool differs.

Runs, for each tool: cold (BuildKit cache pruned first) and warm (nothing changed);
with ``--changed``, also one target changed (a line appended to hello's script, in a copy
of examples/). Prints wall time and peak memory (GNU time's %M: the max RSS of the
largest single process of the run, not the sum over the process tree).

    python bench/mab_vs_bake.py [--rounds N]
    python bench/mab_vs_bake.py --driver docker-container --changed [--rounds N]

``--driver docker-container``: both tools on one docker-container builder (what
docker/setup-buildx-action makes), each on its defaults: mab with builds.yaml's registry
cache and its skip of unchanged targets, bake as it is; plus mab with ``cache: {type:
none}`` to show what the cache export costs. Cold prunes that builder's cache and pushes
into fresh registry paths, so no registry cache of an earlier round helps either tool.
The builder runs the set-up's BuildKit image (scripts/buildkit-up, root) and is removed at
the end.

Needs the engine, QEMU, the registry and the mirror images (scripts/demo sets them up).
"""

from __future__ import annotations

import argparse
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

from mab.config.models import load_project  # noqa: E402
from mab.pipeline.build import render_dockerfiles  # noqa: E402
from mab.planning.plan import make_plan  # noqa: E402


def bake_file(project: Path, out: Path, registry: str) -> Path:
    """A bake file with the targets of *project* (a builds.yaml), pushing to *registry*."""
    plan = make_plan(load_project(project))
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


def prune(builder: str | None) -> None:
    """Empty BuildKit's cache: the default builder's, or *builder*'s."""
    cmd = ["docker", "builder", "prune", "-af"]
    if builder is not None:
        cmd = ["docker", "buildx", "prune", "-af", "--builder", builder]
    subprocess.run(cmd, check=True, capture_output=True)


def container_builder() -> str:
    """A docker-container builder as scripts/buildkit-up describes (its BuildKit image,
    host network, its buildkitd.toml for the plain-HTTP registry), bootstrapped."""
    state = Path("/etc/mab-engine/buildkit-up.json")
    if not state.is_file():
        subprocess.run([str(REPO / "scripts" / "buildkit-up"), "--quiet"], check=True)
    info = json.loads(state.read_text())
    name = f"mab-bench-{os.getpid()}"
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


def project(work: Path, registry: str, extra: str, hello_tag: str = "1.0.0") -> Path:
    """The demo builds.yaml over the copy of examples/ in *work*, pushing to *registry*."""
    text = (REPO / "builds.yaml").read_text()
    text = text.replace("localhost:5000/mab-demo", registry)
    text = text.replace("context: examples/", f"context: {work}/examples/")
    text = text.replace('tags: ["1.0.0", latest]', f'tags: ["{hello_tag}", latest]')
    path = work / f"builds-{registry.rsplit('/', 1)[-1]}.yaml"
    path.write_text(text + extra)
    return path


def tool_commands(
    work: Path, builder: str | None, round_id: str, hello_tag: str
) -> dict[str, list[str]]:
    """Each tool's command for this round (its own registry path) and hello's tag."""
    on = ["--builder", builder] if builder else []
    bake_dir = work / f"bake-{round_id}"
    bake_dir.mkdir(exist_ok=True)
    bake_project = project(work, f"localhost:5000/bench-bake-{round_id}", "", hello_tag)
    bake = bake_file(bake_project, bake_dir, f"localhost:5000/bench-bake-{round_id}")
    tools = {
        "docker buildx bake": [
            *["docker", "buildx", "bake", *on, f"--allow=fs.read={work}", "-f", str(bake)],
            *["--progress", "plain"],
        ]
    }
    mab = [sys.executable, "-m", "mab", "build", *on, "-f"]
    none = "cache: {type: none}\n"
    if builder is None:
        # the project's cache would also speed mab up on cold runs; compare BuildKit to
        # BuildKit (the docker-driver figures in docs/benchmarks.md were made so)
        path = project(work, f"localhost:5000/bench-mab-{round_id}", none, hello_tag)
        tools["mab build"] = [*mab, str(path)]
    else:
        path = project(work, f"localhost:5000/bench-mab-{round_id}", "", hello_tag)
        tools["mab build"] = [*mab, str(path)]
        path = project(work, f"localhost:5000/bench-mabnc-{round_id}", none, hello_tag)
        tools["mab build, cache: none"] = [*mab, str(path)]
    return tools


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--driver", choices=("docker", "docker-container"), default="docker")
    parser.add_argument("--changed", action="store_true", help="also time one target changed")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mab-bench-"))
    shutil.copytree(REPO / "examples", work / "examples")
    script = work / "examples" / "hello" / "hello.sh"
    original = script.read_text()
    env = {**os.environ, "CI": "true"}
    builder = container_builder() if args.driver == "docker-container" else None
    kinds = ("cold", "warm", "changed") if args.changed else ("cold", "warm")
    results: dict[tuple[str, str], list[tuple[float, int]]] = {}
    try:
        for _ in range(args.rounds):
            round_id = uuid.uuid4().hex[:8]  # fresh registry paths: no earlier cache helps
            for name in tool_commands(work, builder, round_id, "1.0.0"):
                script.write_text(original)
                cmd = tool_commands(work, builder, round_id, "1.0.0")[name]
                prune(builder)
                results.setdefault((name, "cold"), []).append(timed(cmd, env))
                results.setdefault((name, "warm"), []).append(timed(cmd, env))
                if args.changed:  # one target changed: hello's script, released as 1.0.1
                    script.write_text(original + "# changed\n")
                    cmd = tool_commands(work, builder, round_id, "1.0.1")[name]
                    results.setdefault((name, "changed"), []).append(timed(cmd, env))
    finally:
        script.write_text(original)
        if builder is not None:
            subprocess.run(["docker", "buildx", "rm", builder], check=False, capture_output=True)
    print(f"driver: {args.driver}{f' (builder {builder})' if builder else ''}")
    print(f"{'tool':24} {'run':7} {'wall s (median)':>16} {'runs':>24} {'max RSS MiB':>12}")
    for (name, kind), runs in sorted(results.items(), key=lambda kv: kinds.index(kv[0][1])):
        walls = [w for w, _ in runs]
        rss = max(r for _, r in runs) / 1024
        shown = ", ".join(f"{w:.1f}" for w in walls)
        print(f"{name:24} {kind:7} {statistics.median(walls):16.1f} {shown:>24} {rss:12.0f}")


if __name__ == "__main__":
    main()
