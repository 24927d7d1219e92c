"""A tiny HTTP(S) server on 127.0.0.1 that records every request and answers ``200 {}``.

It stands in for OpenSearch where a test must see exactly what a client sent (which headers, over
which scheme) and nothing has to be stored::

    with capturing_server() as server:           # or capturing_server(tls=True): a self-signed cert
        ...  # point cdcsync at server.url
        assert server.requests == []

``GET /`` answers an OpenSearch-shaped ``info`` body; every other request ``{}``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.any_method import AnyMethodHandler

_INFO = {
    "name": "capturing",
    "cluster_name": "capturing",
    "version": {"number": "2.19.0", "distribution": "opensearch"},
}


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased


@dataclass
class CapturingServer:
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _requests: list[Captured] = field(default_factory=list)

    @property
    def requests(self) -> list[Captured]:
        with self._lock:
            return list(self._requests)

    def record(self, request: Captured) -> None:
        with self._lock:
            self._requests.append(request)


class _Handler(AnyMethodHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.capture.record(Captured(self.command, self.path, headers))
        body = json.dumps(_INFO if self.path == "/" else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, capture: CapturingServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.capture = capture


def _self_signed(folder: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (no client trusts it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "capturing-server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextlib.contextmanager
def capturing_server(*, tls: bool = False) -> Iterator[CapturingServer]:
    """Serve on a free 127.0.0.1 port until the block ends; ``tls`` serves HTTPS, self-signed."""
    capture = CapturingServer()
    server = _Server(capture)
    scheme = "http"
    if tls:
        with tempfile.TemporaryDirectory() as folder:
            server.socket = _self_signed(Path(folder)).wrap_socket(server.socket, server_side=True)
        scheme = "https"
    capture.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    serving.start()
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()
        serving.join()
