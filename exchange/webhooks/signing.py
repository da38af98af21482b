"""Sign webhook messages and verify them, per Standard Webhooks (https://www.standardwebhooks.com).

The scheme (Standard Webhooks spec §Signature scheme):

- a secret is ``whsec_`` followed by the base64 of 24 to 64 random bytes; the HMAC key is
  the decoded bytes, not the text;
- each message carries three headers: ``webhook-id`` (the message id, the same on every
  retry), ``webhook-timestamp`` (unix seconds when this attempt was sent) and
  ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``,
  one per secret in use (during a rotation, the old and the new one);
- ``body`` is the exact bytes sent, so a receiver verifies the raw body before parsing it.

Verification recipe, for payer systems (``webhook_verify`` does exactly this):

1. read the three headers; refuse if one is missing;
2. refuse a timestamp more than the tolerance (5 minutes) away from your clock, in either
   direction — that is what stops a captured message being replayed later;
3. compute ``base64(HMAC-SHA256(key, f"{id}.{timestamp}.".encode() + body))`` with each
   secret you accept, and accept the message if any ``v1,`` entry of ``webhook-signature``
   equals one of them (compare in constant time);
4. only then parse the body as JSON; de-duplicate on ``webhook-id``, since a message may
   arrive more than once.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the format's prefix, not a secret
# Standard Webhooks §Signature scheme: secrets are 24 to 64 random bytes.
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = timedelta(minutes=5)


class WebhookVerificationError(Exception):
    """The message is not one the hub signed with the given secrets, or it is too old or new."""


def webhook_secret_generate() -> str:
    """Return a new signing secret in the Standard Webhooks format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def webhook_signature(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,<base64>`` signature of one message under one secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def webhook_headers(
    *, secrets: Sequence[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Return the three Standard Webhooks headers of one attempt, signed with every secret."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            webhook_signature(secret=secret, message_id=message_id, timestamp=timestamp, body=body)
            for secret in secrets
        ),
    }


def webhook_verify(
    *,
    secrets: Sequence[str],
    headers: Mapping[str, str],
    body: bytes | str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Return the message's JSON payload if it is signed with one of ``secrets`` and was sent
    within ``tolerance`` of ``now``; raise WebhookVerificationError saying why not."""
    by_name = {name.lower(): value for name, value in headers.items()}
    missing = [
        name
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if not by_name.get(name)
    ]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    message_id, timestamp_text = by_name["webhook-id"], by_name["webhook-timestamp"]
    if not timestamp_text.isdigit():
        raise WebhookVerificationError(f"webhook-timestamp {timestamp_text!r} is not unix seconds")
    timestamp = int(timestamp_text)
    sent = datetime.fromtimestamp(timestamp, UTC)
    if now - sent > tolerance:
        raise WebhookVerificationError(
            f"the message is stale: sent {int((now - sent).total_seconds())} s ago, more than "
            f"the {int(tolerance.total_seconds())} s tolerance"
        )
    if sent - now > tolerance:
        raise WebhookVerificationError(
            f"the message is from the future: timestamped {int((sent - now).total_seconds())} s "
            f"ahead, more than the {int(tolerance.total_seconds())} s tolerance"
        )
    raw = body.encode() if isinstance(body, str) else body
    expected = [
        webhook_signature(secret=secret, message_id=message_id, timestamp=timestamp, body=raw)
        for secret in secrets
    ]
    given = [entry for entry in by_name["webhook-signature"].split(" ") if entry]
    if not any(
        hmac.compare_digest(entry.encode(), signature.encode())
        for entry in given
        for signature in expected
    ):
        raise WebhookVerificationError(
            "no signature matches: the body was changed, or it was signed with another secret"
        )
    payload: dict[str, Any] = json.loads(raw)
    return payload
