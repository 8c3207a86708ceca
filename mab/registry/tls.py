"""TLS for the dev registry: a self-signed CA, a server certificate for this machine, and
the places that make the engine, buildx and mab trust that CA.

Made with the ``cryptography`` package (no openssl subprocess). The CA carries name
constraints: it can only vouch for ``localhost``, this machine's host name and loopback
addresses, so trusting it cannot make any other site's certificate valid.

Who reads which trust (measured with dockerd 26.1 and buildx 0.29, see docs/registries.md):

- dockerd, and the BuildKit inside it (buildx ``docker`` driver), read
  ``/etc/docker/certs.d/HOST:PORT/ca.crt``;
- mab's registry client reads the same file (and ``MAB_CA_BUNDLE``);
- the docker CLI's own registry code (``buildx imagetools``), crane and skopeo use the
  system roots, so the CA also goes to ``/usr/local/share/ca-certificates`` and
  ``update-ca-certificates`` runs. buildx talks plain HTTP to ``localhost`` and loopback
  IPs whatever the registry speaks, so a TLS registry is named by this machine's host
  name (``HOSTNAME:PORT``), which the certificate also covers.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mab import proc

if TYPE_CHECKING:  # cryptography loads in ~60 ms: only when certificates are made
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

SERVER_IPS = ("127.0.0.1", "::1")
LOOPBACK_NETS = ("127.0.0.0/8", "::1/128")
_DAYS_CA = 3650
_DAYS_SERVER = 825
_DNS_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def machine_name() -> str | None:
    """This machine's host name when it is a usable DNS name other than localhost."""
    name = socket.gethostname().lower()
    if name == "localhost" or not _DNS_RE.match(name):
        return None
    return name


def server_names() -> tuple[str, ...]:
    """The DNS names the registry certificate covers: localhost and the host name."""
    name = machine_name()
    return ("localhost", name) if name else ("localhost",)


def docker_certs_dir() -> Path:
    """Where dockerd looks for per-registry CAs (``MAB_DOCKER_CERTS_DIR`` overrides it)."""
    return Path(os.environ.get("MAB_DOCKER_CERTS_DIR") or "/etc/docker/certs.d")


def system_ca_dir() -> Path | None:
    """Debian's folder for local CAs, or None when ``MAB_SYSTEM_TRUST=0`` or it is absent."""
    if os.environ.get("MAB_SYSTEM_TRUST", "1") == "0":
        return None
    folder = Path("/usr/local/share/ca-certificates")
    return folder if folder.is_dir() and shutil.which("update-ca-certificates") else None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(
    common_name: str, names: tuple[str, ...]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that signs server certificates for *names* and loopback only."""
    from cryptography import x509  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it
    from cryptography.x509.oid import NameOID  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    permitted: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    permitted += [x509.IPAddress(ipaddress.ip_network(net)) for net in LOOPBACK_NETS]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_DAYS_CA))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_server_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: tuple[str, ...],
    ips: tuple[str, ...] = SERVER_IPS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for *names* and *ips*, signed by the CA."""
    from cryptography import x509  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it

    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_DAYS_SERVER))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def write_tls_files(folder: Path, label: str, names: tuple[str, ...]) -> TlsFiles:
    """Make a CA and a server certificate for *names* in *folder* (keys mode 0600)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - cryptography loads slowly; only mab registry up --tls needs it

    folder.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca(f"mab dev registry CA ({label})", names)
    cert, key = make_server_cert(ca_cert, ca_key, names)
    files = TlsFiles(
        ca_cert=folder / "ca.crt",
        ca_key=folder / "ca.key",
        cert=folder / "server.crt",
        key=folder / "server.key",
    )
    _write(files.ca_key, _pem_key(ca_key), 0o600)
    _write(files.key, _pem_key(key), 0o600)
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(mode)


def trust_hosts(port: int, names: tuple[str, ...]) -> tuple[str, ...]:
    """The registry hosts as clients write them: every name and 127.0.0.1, with the port."""
    return (*(f"{n}:{port}" for n in names), f"127.0.0.1:{port}")


def _system_file(port: int) -> Path | None:
    folder = system_ca_dir()
    return folder / f"mab-registry-{port}.crt" if folder else None


def install_trust(ca_cert: Path, port: int, names: tuple[str, ...]) -> list[Path]:
    """Make dockerd, BuildKit, buildx, crane, skopeo and mab trust *ca_cert* for the
    registry on *port*. Returns the files written; ``remove_trust`` deletes them.
    Raises OSError when a folder cannot be written (not root)."""
    data = ca_cert.read_bytes()
    written: list[Path] = []
    for host in trust_hosts(port, names):
        folder = docker_certs_dir() / host
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "ca.crt", data, 0o644)
        written.append(folder / "ca.crt")
    system = _system_file(port)
    if system is not None:
        _write(system, data, 0o644)
        written.append(system)
        _update_system_store()
    return written


def remove_trust(port: int, names: tuple[str, ...]) -> None:
    for host in trust_hosts(port, names):
        folder = docker_certs_dir() / host
        (folder / "ca.crt").unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # missing, or the user keeps other files there
            folder.rmdir()
    system = _system_file(port)
    if system is not None and system.exists():
        system.unlink()
        _update_system_store()


def _update_system_store() -> None:
    with contextlib.suppress(proc.ProcessFailed):  # best effort: docker uses certs.d
        proc.call(["update-ca-certificates"], timeout=120)


def ca_file_for(host: str) -> Path | None:
    """The CA docker trusts for *host* (``certs.d/HOST/ca.crt``), if there is one."""
    path = docker_certs_dir() / host / "ca.crt"
    return path if path.is_file() else None
