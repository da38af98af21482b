"""The Standard Webhooks signature and the verification recipe payer systems follow."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from exchange.webhooks.signing import (
    WebhookVerificationError,
    webhook_headers,
    webhook_secret_generate,
    webhook_signature,
    webhook_verify,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BODY = json.dumps({"type": "webhook.test", "data": {"endpoint_id": 1}}).encode()


def _signed(secrets: list[str], *, at: datetime = NOW, body: bytes = BODY) -> dict[str, str]:
    return webhook_headers(
        secrets=secrets, message_id="msg_abc", timestamp=int(at.timestamp()), body=body
    )


def test_a_secret_is_whsec_and_the_base64_of_24_to_64_random_bytes() -> None:
    secret = webhook_secret_generate()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert webhook_secret_generate() != secret


def test_the_signature_is_the_spec_s_hmac_over_id_timestamp_and_body() -> None:
    # The Standard Webhooks reference example (spec's test vectors).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        webhook_signature(secret=secret, message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
                          timestamp=1614265330, body=body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )  # fmt: skip


def test_a_message_signed_with_the_secret_verifies() -> None:
    secret = webhook_secret_generate()
    payload = webhook_verify(secrets=[secret], headers=_signed([secret]), body=BODY, now=NOW)
    assert payload["type"] == "webhook.test"


def test_a_tampered_body_is_rejected() -> None:
    secret = webhook_secret_generate()
    tampered = BODY.replace(b'"endpoint_id": 1', b'"endpoint_id": 2')
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        webhook_verify(secrets=[secret], headers=_signed([secret]), body=tampered, now=NOW)


def test_a_wrong_secret_is_rejected() -> None:
    headers = _signed([webhook_secret_generate()])
    with pytest.raises(WebhookVerificationError, match="another secret"):
        webhook_verify(secrets=[webhook_secret_generate()], headers=headers, body=BODY, now=NOW)


@pytest.mark.parametrize(
    ("sent", "problem"),
    [(NOW - timedelta(minutes=5, seconds=1), "stale"), (NOW + timedelta(minutes=6), "future")],
)
def test_a_timestamp_outside_the_tolerance_is_rejected(sent: datetime, problem: str) -> None:
    secret = webhook_secret_generate()
    with pytest.raises(WebhookVerificationError, match=problem):
        webhook_verify(secrets=[secret], headers=_signed([secret], at=sent), body=BODY, now=NOW)


def test_a_timestamp_within_the_tolerance_verifies() -> None:
    secret = webhook_secret_generate()
    headers = _signed([secret], at=NOW - timedelta(minutes=4))
    assert webhook_verify(secrets=[secret], headers=headers, body=BODY, now=NOW)


def test_a_missing_header_is_named() -> None:
    secret = webhook_secret_generate()
    headers = _signed([secret])
    del headers["webhook-signature"]
    with pytest.raises(WebhookVerificationError, match=r"missing header.*webhook-signature"):
        webhook_verify(secrets=[secret], headers=headers, body=BODY, now=NOW)


def test_during_a_rotation_both_signatures_are_sent_and_either_secret_verifies() -> None:
    old, new = webhook_secret_generate(), webhook_secret_generate()
    headers = _signed([new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert webhook_verify(secrets=[secret], headers=headers, body=BODY, now=NOW)
