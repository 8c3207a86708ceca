"""The dev registry's parts that need no engine: bcrypt htpasswd lines, the CA and server
certificate (checked by a real TLS handshake), trust files, config and state."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mab.errors import UsageError
from mab.registry import server as registryserver
from mab.registry import tls as registrytls
from mab.registry.server import ServerState


def test_htpasswd_line_is_bcrypt_and_checks() -> None:
    line = registryserver.htpasswd_line("alice", "s3cret pass", rounds=4)
    user, _, hashed = line.partition(":")
    assert user == "alice" and hashed.startswith("$2b$04$")
    assert "s3cret" not in line
    assert bcrypt.checkpw(b"s3cret pass", hashed.encode())
    assert registryserver.check_htpasswd(line, "alice", "s3cret pass")
    assert not registryserver.check_htpasswd(line, "alice", "wrong")
    with pytest.raises(UsageError):
        registryserver.htpasswd_line("a:b", "x")


def test_ca_and_server_certificate(tmp_path: Path) -> None:
    names = ("localhost", "buildhost")
    files = registrytls.write_tls_files(tmp_path, "test", names)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = constraints.value.permitted_subtrees or []
    assert x509.DNSName("buildhost") in permitted
    assert x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")) in permitted
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["localhost", "buildhost"]
    assert ipaddress.ip_address("127.0.0.1") in alt.get_values_for_type(x509.IPAddress)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    for key in (files.key, files.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def _serve_once(files: registrytls.TlsFiles) -> tuple[int, threading.Thread]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(files.cert), str(files.key))
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_a_tls_client_trusting_the_ca_accepts_the_server(tmp_path: Path) -> None:
    files = registrytls.write_tls_files(tmp_path, "test", ("localhost",))
    port, thread = _serve_once(files)
    trusting = ssl.create_default_context(cafile=str(files.ca_cert))
    response = httpx.get(f"https://localhost:{port}/v2/", verify=trusting, timeout=5)
    assert response.status_code == 200
    thread.join(5)
    port, thread = _serve_once(files)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{port}/v2/", verify=ssl.create_default_context(), timeout=5)
    thread.join(5)


def test_trust_files_go_where_dockerd_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAB_DOCKER_CERTS_DIR", str(tmp_path / "certs.d"))
    monkeypatch.setenv("MAB_SYSTEM_TRUST", "0")
    files = registrytls.write_tls_files(tmp_path / "tls", "test", ("localhost", "buildhost"))
    written = registrytls.install_trust(files.ca_cert, 5443, ("localhost", "buildhost"))
    hosts = sorted(p.parent.name for p in written)
    assert hosts == ["127.0.0.1:5443", "buildhost:5443", "localhost:5443"]
    assert registrytls.ca_file_for("buildhost:5443") == tmp_path / "certs.d/buildhost:5443/ca.crt"
    assert registrytls.ca_file_for("buildhost:5444") is None
    registrytls.remove_trust(5443, ("localhost", "buildhost"))
    assert not any((tmp_path / "certs.d").iterdir())


def test_config_has_auth_tls_and_deletes_on(tmp_path: Path) -> None:
    text = registryserver.render_config(
        root=tmp_path, port=5443, listen="127.0.0.1", auth=True, tls=True, secret="s"
    )
    assert "  addr: 127.0.0.1:5443\n" in text
    assert "  delete:\n    enabled: true\n" in text
    assert f"    path: {tmp_path / 'htpasswd'}\n" in text
    assert f"    certificate: {tmp_path / 'tls' / 'server.crt'}\n" in text
    plain = registryserver.render_config(
        root=tmp_path,
        port=5001,
        listen="127.0.0.1",
        auth=False,
        tls=False,
        secret="s",
        in_container=True,
    )
    assert "auth:" not in plain and "tls:" not in plain
    assert "  addr: :5000\n" in plain and "rootdirectory: /mab/data" in plain


def test_state_round_trip_and_host_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAB_REGISTRIES_DIR", str(tmp_path))
    folder = registryserver.folder_for(5443)
    folder.mkdir(parents=True)
    state = ServerState(
        port=5443, folder=str(folder), tls=True, names=["localhost", "buildhost"], pid=1
    )
    state.save()
    loaded = ServerState.load(folder)
    assert loaded == state
    assert state.host == "buildhost:5443"  # buildx talks plain HTTP to localhost
    assert ServerState(port=5001, folder=str(folder)).host == "localhost:5001"
    assert registryserver.find_state("buildhost:5443") == state
    assert registryserver.find_state("127.0.0.1:5443") == state
    assert registryserver.find_state("elsewhere:5443") is None
    assert registryserver.find_state("localhost:5444") is None
    assert registryserver.all_states() == [state]
    assert not registryserver.running(state)  # pid 1 is not a registry serving its config


def test_up_refuses_a_busy_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAB_REGISTRIES_DIR", str(tmp_path))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = int(busy.getsockname()[1])
        with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is already in use"):
            registryserver.up(port)


def test_gc_summary_is_distributions_closing_line() -> None:
    output = (
        "team/app\nteam/app: marking manifest sha256:aa\n\n"
        "12 blobs marked, 3 blobs and 0 manifests eligible for deletion\n"
        "blob eligible for deletion: sha256:bb\n"
    )
    assert registryserver._gc_summary(output) == (
        "12 blobs marked, 3 blobs and 0 manifests eligible for deletion"
    )
