"""A service serves HTTPS from the certificate files its settings name (and, given a client CA,
only to clients with a certificate it signed)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from goalwatch.dev.stack import free_port

SERVER = """
import sys
from fastapi import FastAPI
from goalwatch.serving import TlsFiles, serve
app = FastAPI()
@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "over tls"}
port, cert, key, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] or None
serve(app, host="127.0.0.1", port=port, service="toy", env_var="TOY_PORT",
      tls=TlsFiles(cert=cert, key=key, client_ca=ca))
"""


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as files."""

    def __init__(self, folder: Path) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("goalwatch test CA", ca_key)
        self.ca = folder / "ca.pem"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for who in ("server", "client"):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _certificate(who, key, issuer=(ca.subject, ca_key))
            (folder / f"{who}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (folder / f"{who}.key").write_bytes(_pem(key))
        self.folder = folder


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def _serving(pki: Pki, *, client_ca: bool) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(pki.folder / "server.pem"),
         str(pki.folder / "server.key"), str(pki.ca) if client_ca else ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        url = f"https://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(url, verify=False, timeout=1)
                break
            except httpx.ConnectError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.stderr.read() if process.stderr else "") from None
                time.sleep(0.05)
            except httpx.HTTPError:
                break  # it answered (perhaps by asking for a certificate): it is up
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_service_serves_https_from_its_certificate_files(pki: Pki) -> None:
    for url in _serving(pki, client_ca=False):
        context = ssl.create_default_context(cafile=str(pki.ca))
        answer = httpx.get(f"{url}/hello", verify=context)
        assert answer.json() == {"hello": "over tls"}


def test_with_a_client_ca_only_clients_with_a_certificate_are_served(pki: Pki) -> None:
    for url in _serving(pki, client_ca=True):
        context = ssl.create_default_context(cafile=str(pki.ca))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/hello", verify=context)
        context.load_cert_chain(pki.folder / "client.pem", pki.folder / "client.key")
        assert httpx.get(f"{url}/hello", verify=context).json() == {"hello": "over tls"}
