"""Redaction: the one place that hides secrets from what mab prints, logs and writes.

Every message, log line, report, plan JSON and label that can carry a value from the user,
the environment or a registry passes through ``redact`` before it leaves mab. It hides the
secrets mab was told about (passwords it read for a login, with docker's base64
``user:password``) and every one passed in, and the secrets it can recognise without being
told: the user information of a URL (``https://user:password@host``, any scheme, in any
case; a password may hold ``@``), a scheme-less ``user:password@host`` and the shapes of
well-known tokens (GitHub, GitLab, Docker Hub, AWS access keys, JWTs, the value of a
``Bearer`` or ``Basic`` authorization).

``check_registry_string`` validates a registry string (``HOST[:PORT][/PATH]``) and refuses
one that carries credentials, with a message that does not repeat them.
"""

from __future__ import annotations

import base64
import math
import re
import threading
from collections.abc import Iterable

REDACTED = "********"

_known_secrets: set[str] = set()
_lock = threading.Lock()

# An image digest (``name@sha256:...``) is not user information: never redact before one.
_NOT_A_DIGEST = r"(?![A-Za-z0-9]+(?:[+._-][A-Za-z0-9]+)*:[A-Fa-f0-9]{32,})"
# scheme://USERINFO@ : everything up to the last @ of the authority (a password may hold @).
_URL_USERINFO = re.compile(
    r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>`]+@" + _NOT_A_DIGEST + r"(?=[^\s@/])"
)
# USER:PASSWORD@HOST without a scheme (a registry string, an env value pasted as is).
_BARE_USERINFO = re.compile(
    r"(?<![\w.~%+:/@-])[A-Za-z0-9._~%+-]+:[^\s/\"'<>`]+@" + _NOT_A_DIGEST + r"(?=[A-Za-z0-9\[])"
)
_TOKEN_SHAPES = (
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}"),  # GitHub fine-grained tokens
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"),  # GitLab personal access tokens
    re.compile(r"\bdckr_pat_[A-Za-z0-9_-]{20,}"),  # Docker Hub personal access tokens
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key ids
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # JWTs
)
# The credential after "Bearer " or "Basic " (an Authorization header, a curl line). Not
# a challenge's parameters (Bearer realm="...") nor prose ("Basic authentication"): the
# value holds a digit or one of + / = . _ ~ -.
_AUTH_VALUE = re.compile(
    r"\b(Bearer|Basic)(\s+)(?![A-Za-z]+=)(?=[A-Za-z0-9._~+/-]*[0-9._~+/=-])[A-Za-z0-9._~+/-]{8,}=*",
    re.IGNORECASE,
)


def remember_secret(secret: str, username: str | None = None) -> None:
    """Have ``redact`` hide *secret* (and docker's base64 ``user:secret``) from now on."""
    if len(secret) < 3:
        return
    with _lock:
        _known_secrets.add(secret)
        if username is not None:
            _known_secrets.add(base64.b64encode(f"{username}:{secret}".encode()).decode())


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* with every known secret (and every one in *secrets*), URL user information
    and every recognised token replaced by stars."""
    with _lock:
        every = {*_known_secrets, *(s for s in secrets if len(s) >= 3)}
    for secret in sorted(every, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return redact_patterns(text)


def redact_patterns(text: str) -> str:
    """*text* with what looks like a secret (URL user information, token shapes) hidden;
    what mab was told is secret is left to ``redact``."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _BARE_USERINFO.sub(f"{REDACTED}@", text)
    text = _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    for shape in _TOKEN_SHAPES:
        text = shape.sub(REDACTED, text)
    return text


# Build arg / ARG names that look like they carry a secret: builds.yaml's check and `mab
# lint`'s MAB005 flag the same names.
SECRET_NAME_RE = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|_KEY$|^KEY$|APIKEY|CREDENTIAL", re.I)
_FILE_LIKE = re.compile(r"\.[a-z][a-z0-9]{0,7}$")  # ends with an extension: .conf, .json, .txt
_NOT_IN_TOKENS = frozenset(" \t/\\")


def looks_like_token(value: str) -> bool:
    """Whether *value* (one word that should be something else: a file name, a host)
    looks like a secret value: a known token shape, or long, mixed and random enough.

    Meant for values that should be paths or names, so a false positive costs the user a
    rename; the check looks at the value only, never at a file."""
    if any(shape.search(value) for shape in _TOKEN_SHAPES) or _AUTH_VALUE.search(value):
        return True
    if len(value) < 12 or _FILE_LIKE.search(value) or any(c in _NOT_IN_TOKENS for c in value):
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    return classes >= 3 and _entropy(value) >= 3.5


def _entropy(value: str) -> float:
    """Shannon entropy of *value*, in bits per character."""
    counts = {c: value.count(c) for c in set(value)}
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


# --- registry strings ---------------------------------------------------------------------

_REGISTRY_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?)(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)
_HOST_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?$")
MAX_REGISTRY_LENGTH = 255  # the distribution spec's limit of a whole repository name


class CredentialsInValue(ValueError):
    """A value that should name a place holds credentials; the message never shows them."""


def check_registry_string(value: str, what: str = "registry", *, allow_path: bool = True) -> str:
    """*value*, a registry ``HOST[:PORT][/PATH]`` (``HOST[:PORT]`` without *allow_path*),
    stripped of blanks and a trailing ``/``; raise ValueError naming *what* otherwise.

    A value with ``@`` holds user information (``robot:password@host``): that raises
    CredentialsInValue, whose message repeats nothing of the value. Other messages show
    the value, redacted."""
    value = value.strip().rstrip("/") if allow_path else value.strip()
    if "@" in value:
        raise CredentialsInValue(
            f"{what} holds credentials (USER:PASSWORD@ before the host; not shown here): "
            "write only HOST[:PORT]"
            + ("[/PATH]" if allow_path else "")
            + " and log in with mab login, or a registries: entry with password_env"
        )
    if len(value) > MAX_REGISTRY_LENGTH:
        raise ValueError(f"{what} is longer than {MAX_REGISTRY_LENGTH} characters")
    shown = redact(value)
    scheme, sep, rest = value.partition("://")
    if sep and scheme.isalpha():
        raise ValueError(
            f"invalid {what} '{shown}': write it without '{scheme}://', e.g. '{redact(rest)}'"
        )
    if allow_path and not _REGISTRY_RE.match(value):
        raise ValueError(
            f"invalid {what} '{shown}': write HOST[:PORT][/PATH], lowercase, "
            "e.g. 'localhost:5000/demo' or 'ghcr.io/acme'"
        )
    if not allow_path and not _HOST_RE.match(value):
        raise ValueError(f"invalid {what} '{shown}': write HOST[:PORT], lowercase")
    return value
