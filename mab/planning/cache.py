"""Build cache options per target and platform (pure).

Each target x platform gets its own cache (its own registry ref, local folder or gha
scope), so the jobs of a split build never overwrite each other's cache. Export errors
are ignored: a cache that cannot be written must not fail a build that succeeded.
"""

from __future__ import annotations

from pathlib import Path

from mab.config.models import CacheConfig
from mab.platforms import Platform

CacheSpec = dict[str, str]


def _fill(template: str, repository: str, target: str, platform: Platform) -> str:
    values = {"repository": repository, "target": target, "platform": platform.slug}
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def fill_spec(spec: CacheSpec, repository: str, target: str, platform: Platform) -> CacheSpec:
    """``{repository}``, ``{target}`` and ``{platform}`` filled in every value of *spec*."""
    return {k: _fill(v, repository, target, platform) for k, v in spec.items()}


def should_export(cache: CacheConfig, *, in_ci: bool, split_job: bool) -> bool:
    """Whether a run writes the cache: ``export: auto`` writes it only where BuildKit
    starts empty (CI, a split build's job); measured locally, a registry export of every
    intermediate layer cost a cold run more than it saved (docs/benchmarks.md)."""
    if cache.export == "auto":
        return in_ci or split_job
    return cache.export == "always"


def cache_options(
    cache: CacheConfig,
    repository: str,
    target: str,
    platform: Platform,
    project_dir: Path,
    *,
    export: bool = True,
) -> tuple[list[CacheSpec], CacheSpec | None]:
    """(--cache-from entries, --cache-to entry) for one platform image of one target;
    without *export*, no --cache-to."""
    sources, sink = _options(cache, repository, target, platform, project_dir)
    return sources, sink if export else None


def _options(
    cache: CacheConfig, repository: str, target: str, platform: Platform, project_dir: Path
) -> tuple[list[CacheSpec], CacheSpec | None]:
    if cache.type == "none":
        return [], None
    if cache.type == "inline":
        return [{"type": "registry", "ref": repository}], {"type": "inline"}
    if cache.type == "registry":
        ref = _fill(cache.ref, repository, target, platform)
        return [{"type": "registry", "ref": ref}], {
            "type": "registry",
            "ref": ref,
            "mode": cache.mode,
            "ignore-error": "true",
        }
    if cache.type == "local":
        folder = project_dir / _fill(cache.dir, repository, target, platform)
        sources = (
            [{"type": "local", "src": str(folder)}] if (folder / "index.json").is_file() else []
        )
        return sources, {
            "type": "local",
            "dest": str(folder),
            "mode": cache.mode,
            "ignore-error": "true",
        }
    scope = _fill(cache.scope, repository, target, platform)  # gha
    return [{"type": "gha", "scope": scope}], {
        "type": "gha",
        "scope": scope,
        "mode": cache.mode,
        "ignore-error": "true",
    }


def parse_spec(text: str) -> CacheSpec:
    """``type=registry,ref=x`` (buildx's own syntax) -> a dict, for CLI pass-through."""
    spec: CacheSpec = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"'{part}' in '{text}' is not KEY=VALUE")
        spec[key.strip()] = value.strip()
    if "type" not in spec:
        raise ValueError(f"'{text}' names no type=")
    return spec
