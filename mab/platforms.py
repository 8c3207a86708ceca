"""OCI platform strings: parsing, normalisation and the set mab accepts."""

from __future__ import annotations

from dataclasses import dataclass

# What BuildKit can target on Linux (natively or under QEMU). Order is display order.
KNOWN_PLATFORMS: tuple[str, ...] = (
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64le",
    "linux/loong64",
)

# Spellings BuildKit itself normalises (containerd's platforms.Normalize).
_ALIASES = {
    "linux/arm64/v8": "linux/arm64",
    "linux/aarch64": "linux/arm64",
    "linux/x86_64": "linux/amd64",
    "linux/x86-64": "linux/amd64",
    "linux/arm": "linux/arm/v7",
    "linux/armhf": "linux/arm/v7",
    "linux/armel": "linux/arm/v6",
    "linux/i386": "linux/386",
}


class PlatformValueError(ValueError):
    """Raised for a platform string that is not a known OS/ARCH[/VARIANT]."""


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    arch: str
    variant: str | None = None

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}/{self.variant}" if self.variant else f"{self.os}/{self.arch}"

    @property
    def slug(self) -> str:
        """A file-name-safe form: ``linux-arm-v7``."""
        return str(self).replace("/", "-")

    @classmethod
    def parse(cls, text: str) -> Platform:
        canonical = normalize(text)
        parts = canonical.split("/")
        return cls(parts[0], parts[1], parts[2] if len(parts) > 2 else None)

    @classmethod
    def from_oci(cls, os: str | None, arch: str | None, variant: str | None) -> Platform:
        """Build from an OCI descriptor's platform, normalising ``arm64/v8`` and friends."""
        text = "/".join(p for p in (os or "unknown", arch or "unknown", variant) if p)
        try:
            return cls.parse(text)
        except PlatformValueError:
            return cls(os or "unknown", arch or "unknown", variant)


def normalize(text: str) -> str:
    """Return the canonical spelling of *text* or raise with the valid forms listed."""
    cleaned = text.strip().lower()
    cleaned = _ALIASES.get(cleaned, cleaned)
    if cleaned in KNOWN_PLATFORMS:
        return cleaned
    valid = ", ".join(KNOWN_PLATFORMS)
    if "/" not in cleaned:
        guess = _ALIASES.get(f"linux/{cleaned}", f"linux/{cleaned}")
        example = f"'{guess}'" if guess in KNOWN_PLATFORMS else "'linux/amd64'"
        raise PlatformValueError(
            f"'{text}' is not a platform: write OS/ARCH[/VARIANT], e.g. {example}. Valid: {valid}"
        )
    raise PlatformValueError(f"unknown platform '{text}'. Valid: {valid}")
