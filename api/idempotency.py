"""``Idempotency-Key`` on every POST of the payer-system API
(IETF draft-ietf-httpapi-idempotency-key-header).

A payer system that is not sure its POST arrived sends it again with the same key: the
first response is replayed (``Idempotent-Replayed: true``) and nothing is created twice.
The same key with another method, path, query or body is a 422 naming the header. Keys are kept
per payer, so two payers' systems may use the same key. Only successful responses are
kept: a refused POST created nothing, and may be sent again, corrected, with its key.
The header is optional; without it every POST is taken as new.

A key is kept API_IDEMPOTENCY_KEY_HOURS (24 by default; the draft §2 lets the resource set
how long a key lives and asks that it be documented): after that the same key is a new
POST, and beat deletes the expired keys (``idempotency_keys_purge``, api/tasks.py).
"""

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from api.models import IdempotencyKey
from hub.models import Payer

HEADER = "Idempotency-Key"
# The draft's key is a Structured Fields String (RFC 8941 §3.3.3): printable ASCII.
_KEY = re.compile(r"[\x20-\x7e]{1,255}", re.ASCII)


def idempotent_post(*, request: Request, payer: Payer, respond: Callable[[], Response]) -> Response:
    """Return ``respond()``'s response, or the one a POST with this request's key got before.

    ``respond`` runs in the transaction that keeps the key with its response, so a response
    is kept only with what it created, and two POSTs racing with one key create it once.
    """
    key = request.headers.get(HEADER)
    if key is None:
        return respond()
    key = key.strip().strip('"')
    if not _KEY.fullmatch(key):
        raise exceptions.ValidationError(
            {HEADER: ["Give a key of 1 to 255 printable ASCII characters, e.g. a UUID."]}
        )
    fingerprint = _fingerprint(request)
    kept_since = _kept_since(timezone.now())
    kept = _kept(payer=payer, key=key, kept_since=kept_since)
    if kept is not None:
        return _replayed(kept, fingerprint)
    try:
        with transaction.atomic():
            # The key expired: what it answered is forgotten, and this POST is a new one.
            IdempotencyKey.objects.for_payer(payer).filter(
                key=key, created_at__lt=kept_since
            ).delete()
            response = respond()
            if 200 <= response.status_code < 300:
                IdempotencyKey.objects.create(
                    payer=payer,
                    key=key,
                    fingerprint=fingerprint,
                    response_status=response.status_code,
                    response_body=response.data,
                )
    except IntegrityError:
        # Another POST with this key committed first: answer as it was answered.
        kept = _kept(payer=payer, key=key, kept_since=kept_since)
        if kept is None:
            raise
        return _replayed(kept, fingerprint)
    return response


def idempotency_keys_purge(*, now: datetime) -> int:
    """Delete the keys of every payer that expired (hourly from beat); return how many."""
    deleted, _ = (
        IdempotencyKey.objects.across_payers(reason="housekeeping: expired keys of every payer")
        .filter(created_at__lt=_kept_since(now))
        .delete()
    )
    return deleted


def _kept_since(now: datetime) -> datetime:
    """Return when the oldest key still kept was made."""
    return now - timedelta(hours=settings.API_IDEMPOTENCY_KEY_HOURS)


def _kept(*, payer: Payer, key: str, kept_since: datetime) -> IdempotencyKey | None:
    return (
        IdempotencyKey.objects.for_payer(payer).filter(key=key, created_at__gte=kept_since).first()
    )


def _fingerprint(request: Request) -> str:
    """Return the sha256 of the method, the path with its query (a cohort posted as NDJSON
    names its former payer there) and the body as canonical JSON (the same JSON sent with
    other spacing or key order is the same request)."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    target = request.get_full_path()
    return hashlib.sha256(f"{request.method} {target}\n{body}".encode()).hexdigest()


def _replayed(kept: IdempotencyKey, fingerprint: str) -> Response:
    if kept.fingerprint != fingerprint:
        raise exceptions.ValidationError(
            {
                HEADER: [
                    f"The key {kept.key!r} was used with another request (another path, query "
                    "or body); use a new key for a new request."
                ]
            }
        )
    return Response(
        kept.response_body, status=kept.response_status, headers={"Idempotent-Replayed": "true"}
    )
