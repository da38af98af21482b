"""The sandbox's HTTPS and mutual-TLS options: bad combinations are refused with the reason;
with a certificate every advertised URL starts with https. (The sandbox serving mutual TLS
is exercised by tests/hub/test_outbound_client_certificates.py and
tests/exchange/smart/test_mutual_tls.py.)"""

from pathlib import Path

import pytest

from sandbox.config import config_from_args

BASE = ["--name", "Former Health Plan", "--port", "8443"]


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "any.pem"
    path.write_text("read by the server at start-up, not by the parser")
    return path


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--tls-cert", "{pem}"], "--tls-cert and --tls-key go together"),
        (["--tls-key", "{pem}"], "--tls-cert and --tls-key go together"),
        (["--client-ca", "{pem}"], "--client-ca needs --tls-cert and --tls-key"),
        (["--tls-cert", "{pem}", "--tls-key", "/no/such/key.pem"], "--tls-key: no such file"),
    ],
)
def test_a_bad_combination_is_refused_with_the_reason(
    flags: list[str], complaint: str, pem: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        config_from_args(BASE + [flag.format(pem=pem) for flag in flags])
    assert complaint in capsys.readouterr().err


def test_with_a_certificate_the_urls_are_https(pem: Path) -> None:
    config = config_from_args(
        [*BASE, "--tls-cert", str(pem), "--tls-key", str(pem), "--client-ca", str(pem)]
    )
    assert config.fhir_base == "https://127.0.0.1:8443/fhir"
    assert config.token_url == "https://127.0.0.1:8443/auth/token"
    assert config.client_ca == pem
    assert config_from_args(BASE).fhir_base == "http://127.0.0.1:8443/fhir"
