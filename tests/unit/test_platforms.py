from __future__ import annotations

import pytest

from mab.platforms import Platform, PlatformValueError, normalize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("LINUX/ARM64", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/x86_64", "linux/amd64"),
        (" linux/arm/v6 ", "linux/arm/v6"),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize("text", ["linux/sparc", "arm64", "windows/amd64", "linux/arm/v9", ""])
def test_rejects(text: str) -> None:
    with pytest.raises(PlatformValueError) as info:
        normalize(text)
    assert "Valid: linux/amd64" in str(info.value)


def test_parse_and_slug() -> None:
    p = Platform.parse("linux/arm/v7")
    assert (p.os, p.arch, p.variant) == ("linux", "arm", "v7")
    assert str(p) == "linux/arm/v7"
    assert p.slug == "linux-arm-v7"
    assert Platform.parse("linux/arm64/v8") == Platform("linux", "arm64")


def test_from_oci_normalises_and_keeps_unknown() -> None:
    assert Platform.from_oci("linux", "arm64", "v8") == Platform("linux", "arm64")
    assert str(Platform.from_oci("unknown", "unknown", None)) == "unknown/unknown"
