"""`modelyard serve` on the network: HTTPS from certificate files, and refusals at start."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.gateway import GatewayProcess

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


def write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def write_self_signed_cert(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """A certificate for 127.0.0.1 (IP SAN) that signs itself, as an operator's test setup would."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelyard test")])
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    write_self_signed_cert(cert, write_key(key))
    return cert, key


@pytest.fixture(scope="module")
def https_gateway(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path]
) -> Iterator[GatewayProcess]:
    cert, key = tls_files
    process = GatewayProcess(
        tmp_path_factory.mktemp("https-gateway"),
        args=("--tls-cert", str(cert), "--tls-key", str(key)),
        scheme="https",
        verify=ssl.create_default_context(cafile=str(cert)),
    ).start()
    yield process
    process.stop()


def exit_of(gateway: GatewayProcess) -> int:
    gateway.start(wait_ready=False)
    assert gateway.process is not None
    return gateway.process.wait(60)


def test_the_openai_sdk_completes_a_chat_over_https(https_gateway: GatewayProcess) -> None:
    assert f"Modelyard listening on https://127.0.0.1:{https_gateway.port}/v1" in (
        https_gateway.log()
    )
    assert "plain HTTP" not in https_gateway.log()
    health = httpx.get(f"{https_gateway.base_url}/healthz", verify=https_gateway.verify)
    assert health.status_code == 200
    # The SDK's own client class: this openai declares `http_client` as httpx2, not httpx.
    with openai.DefaultHttpxClient(verify=https_gateway.verify) as http_client:
        client = openai.OpenAI(
            base_url=f"{https_gateway.base_url}/v1",
            api_key=https_gateway.admin_key,
            max_retries=0,
            http_client=http_client,
        )
        completion = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
        )
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens <= 4


def test_plain_http_to_the_tls_port_gets_no_answer(https_gateway: GatewayProcess) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{https_gateway.port}/healthz", timeout=5)


def test_a_missing_key_file_stops_start_naming_it(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, _ = tls_files
    missing = tmp_path / "nowhere" / "key.pem"
    gateway = GatewayProcess(
        tmp_path / "d", args=("--tls-cert", str(cert), "--tls-key", str(missing))
    )
    assert exit_of(gateway) == 2
    assert f"--tls-key {missing} does not exist" in gateway.log()
    assert "Traceback" not in gateway.log()


def test_a_certificate_without_a_key_stops_start(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, _ = tls_files
    gateway = GatewayProcess(tmp_path / "d", env={"MODELYARD_TLS_CERTFILE": str(cert)})
    assert exit_of(gateway) == 2
    assert "TLS needs both a certificate and a key; --tls-key (MODELYARD_TLS_KEYFILE)" in (
        gateway.log()
    )


def test_a_key_of_another_certificate_stops_start_clearly(
    tmp_path: Path, tls_files: tuple[Path, Path]
) -> None:
    cert, _ = tls_files
    other_key = tmp_path / "other-key.pem"
    write_key(other_key)
    gateway = GatewayProcess(
        tmp_path / "d", args=("--tls-cert", str(cert), "--tls-key", str(other_key))
    )
    assert exit_of(gateway) == 2
    assert "the key does not belong to the certificate" in gateway.log()
    assert "Traceback" not in gateway.log()


def test_an_invalid_trusted_proxy_stops_start_naming_the_setting(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "d", args=("--trusted-proxy", "10.0.0.0/40"))
    assert exit_of(gateway) == 2
    assert "trusted_proxies (MODELYARD_TRUSTED_PROXIES, --trusted-proxy): '10.0.0.0/40'" in (
        gateway.log()
    )
    assert "Traceback" not in gateway.log()
    assert not (tmp_path / "d" / "modelyard.db").exists(), "refused before opening the database"


def test_binding_every_interface_without_tls_warns(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "d", args=("--host", "0.0.0.0")).start(wait_ready=False)
    try:
        assert gateway.process is not None
        deadline = time.monotonic() + 60
        while "Modelyard listening on" not in gateway.log() and time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                break
            time.sleep(0.1)
        assert "warning: 0.0.0.0 is reachable from other machines over plain HTTP" in (
            gateway.log()
        )
    finally:
        gateway.stop()
