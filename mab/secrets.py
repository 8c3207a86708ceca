"""Redaction: the one place that hides secrets from what mab prints, logs and writes.

Every message, log line, report, plan JSON and label that can carry a value from the user,
the environment or a registry passes through ``redact`` before it leaves mab. It hides the
secrets mab was told about (passwords it read for a login, with docker's base64
``user:password``) and every one passed in.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable

REDACTED = "********"

_known_secrets: set[str] = set()
_lock = threading.Lock()


def remember_secret(secret: str, username: str | None = None) -> None:
    """Have ``redact`` hide *secret* (and docker's base64 ``user:secret``) from now on."""
    if len(secret) < 3:
        return
    with _lock:
        _known_secrets.add(secret)
        if username is not None:
            _known_secrets.add(base64.b64encode(f"{username}:{secret}".encode()).decode())


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* with every known secret (and every one in *secrets*) replaced by stars."""
    with _lock:
        every = {*_known_secrets, *(s for s in secrets if len(s) >= 3)}
    for secret in sorted(every, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
