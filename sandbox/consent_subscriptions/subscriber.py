"""Follow the hub Consents this payer discloses under, and stop disclosing when one is withdrawn.

Seed 000 steps 5 and 10-12, an extension of HRex (SPEC "Consent": revocation is local;
notifying the other side through a Subscription is the seed's proposal): the former payer
subscribes (FHIR R4 Subscription, rest-hook) to each Consent it was named in; when the
Consent's status changes the hub POSTs it to the subscriber's endpoint; the former payer
then refuses every later data request under it, as it refuses an expired consent.
Revocation is one-way: no notification makes a withdrawn consent active again.

Subscribing runs on one background thread, never in the request that matched the member:
a slow or unreachable hub must not delay or fail ``$member-match``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fhir.resources.R4B.consent import Consent

from sandbox.consent_subscriptions.hub import HubCallFailed, HubClient, HubConsent, hub_consent_of
from sandbox.fhir.consents import ConsentStore, HeldConsent
from sandbox.fhir.outcomes import FhirError, require_valid

logger = logging.getLogger("sandbox.consent_subscriptions")

# Our record of a Subscription, in FHIR R4 Subscription.status terms; "off" = not needed
# (the Consent was no longer active when we came to subscribe).
REQUESTED, ACTIVE, ERROR, OFF = "requested", "active", "error", "off"
CONSENT_ACTIVE = "active"
ATTEMPTS = 3
BACKOFF_S = 1.0
NOTIFICATIONS_KEPT = 1000


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class HubSubscription:
    """Our Subscription to one hub Consent: what we asked for and what became of it."""

    consent_url: str
    consent_id: str
    secret: str
    created_at: str
    status: str = REQUESTED
    updated_at: str = ""
    subscription_url: str = ""
    consent_status: str = CONSENT_ACTIVE
    error: str = ""
    attempts: int = 0

    def published(self) -> dict[str, Any]:
        """Return what may be shown: everything but the bearer secret."""
        return {k: v for k, v in asdict(self).items() if k != "secret"}


@dataclass
class ReceivedNotification:
    """One accepted POST to the notification endpoint."""

    received_at: str
    consent_url: str
    consent_id: str
    # The Consent.status it carried; "" for a notification without payload.
    status: str
    revoked_consents: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    consent: HubConsent
    subscribe: bool
    end: str | None = None


class ConsentSubscriber:
    """The subscriptions this payer holds at the hub and the notifications it received."""

    def __init__(
        self,
        *,
        client: HubClient | None,
        consents: ConsentStore,
        endpoint: str,
        data_dir: Path | None,
    ) -> None:
        self._client = client
        self._consents = consents
        self._endpoint = endpoint
        self._path = data_dir / "consent-subscriptions.json" if data_dir else None
        self._lock = threading.Lock()
        self._subscriptions: dict[str, HubSubscription] = {}
        self._notifications: list[ReceivedNotification] = []
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._worker: threading.Thread | None = None
        if self._path and self._path.exists():
            self._load(json.loads(self._path.read_text()))

    def _load(self, saved: dict[str, Any]) -> None:
        for raw in saved.get("subscriptions", []):
            subscription = HubSubscription(**raw)
            if subscription.status == REQUESTED:
                subscription.status = ERROR
                subscription.error = (
                    "interrupted by a restart; the next match under this consent subscribes again"
                )
            self._subscriptions[subscription.consent_url] = subscription
        self._notifications = [
            ReceivedNotification(**raw) for raw in saved.get("notifications", [])
        ]

    def _save(self) -> None:
        """Write the state to data_dir (caller holds the lock); it holds bearer secrets: 0600."""
        if not self._path:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.touch(mode=0o600)
        self._path.write_text(
            json.dumps(
                {
                    "subscriptions": [asdict(s) for s in self._subscriptions.values()],
                    "notifications": [asdict(n) for n in self._notifications],
                }
            )
        )

    def _update(self, consent_url: str, **changes: Any) -> None:
        with self._lock:
            known = self._subscriptions.get(consent_url)
            if known is None:
                return
            self._subscriptions[consent_url] = replace(known, updated_at=_now(), **changes)
            self._save()

    # Subscribing

    def follow(self, held: Iterable[HeldConsent]) -> None:
        """Subscribe, in the background, to the hub Consents the held consents came from.

        Does nothing without a hub client id; consents whose sourceReference is not a hub
        Consent URL are not followed; one Subscription per hub Consent (a failed one is
        tried again).
        """
        if self._client is None:
            return
        for consent in held:
            hub_consent = hub_consent_of(consent.source_reference)
            if hub_consent is None:
                continue
            with self._lock:
                known = self._subscriptions.get(hub_consent.url)
                if known is not None and known.status != ERROR:
                    continue
                self._subscriptions[hub_consent.url] = HubSubscription(
                    consent_url=hub_consent.url,
                    consent_id=hub_consent.consent_id,
                    secret=secrets.token_urlsafe(32),
                    created_at=_now(),
                )
                self._save()
            end = consent.period_end
            self._enqueue(_Job(hub_consent, subscribe=True, end=f"{end}T23:59:59Z"))

    def _enqueue(self, job: _Job) -> None:
        self._jobs.put(job)
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="consent-subscriptions", daemon=True
                )
                self._worker.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                self._run(job)
            except Exception:  # a background thread must outlive any failure; it is logged
                logger.exception("following %s failed unexpectedly", job.consent.url)
                self._update(job.consent.url, error="unexpected error; see the sandbox's log")

    def _run(self, job: _Job) -> None:
        """Run job, retrying transient failures with backoff; record the outcome."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                self._call_hub(job)
                return
            except HubCallFailed as failure:
                self._update(job.consent.url, attempts=attempt, error=str(failure))
                if not failure.transient or attempt == ATTEMPTS:
                    logger.warning("following %s failed: %s", job.consent.url, failure)
                    if job.subscribe:
                        self._update(job.consent.url, status=ERROR)
                    return
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))

    def _call_hub(self, job: _Job) -> None:
        client = self._client
        if client is None:  # jobs are queued only when there is a client
            return
        token = client.access_token(job.consent)
        # Confirm the Consent at its source first: it may have changed since the match.
        resource = client.read_consent(job.consent, token=token)
        status = str(resource.get("status", ""))
        if status != CONSENT_ACTIVE:
            revoked = self._withdraw(job.consent.url, status)
            logger.info("%s is %s at the hub; revoked %s", job.consent.url, status, revoked)
            if job.subscribe:
                self._update(job.consent.url, status=OFF, error="")
            return
        if not job.subscribe:
            return
        with self._lock:
            secret = self._subscriptions[job.consent.url].secret
        location, created = client.subscribe(
            job.consent, token=token, endpoint=self._endpoint, secret=secret, end=job.end
        )
        self._update(
            job.consent.url,
            status=str(created.get("status") or ACTIVE),
            subscription_url=location,
            error="",
        )
        logger.info("subscribed to %s: %s", job.consent.url, location)

    # Withdrawal

    def _withdraw(self, consent_url: str, status: str) -> list[str]:
        """Record that the hub Consent is no longer active; revoke what was held under it."""
        self._update(consent_url, consent_status=status)
        revoked = []
        for held in self._consents.from_source(consent_url):
            if held.status == CONSENT_ACTIVE:
                self._consents.revoke(held, status)
                revoked.append(held.consent_id)
        return revoked

    def withdrawal_of(self, consent: HeldConsent) -> str | None:
        """Return why a consent from a hub Consent known to be withdrawn cannot be honoured."""
        with self._lock:
            known = self._subscriptions.get(consent.source_reference)
        if known is None or known.consent_status == CONSENT_ACTIVE:
            return None
        return f"the hub reported the consent {known.consent_status} ({known.consent_url})"

    # Notifications

    def subscription_for(self, secret: str) -> HubSubscription | None:
        """Return the subscription whose notifications carry this bearer secret."""
        with self._lock:
            subscriptions = list(self._subscriptions.values())
        found = None
        for subscription in subscriptions:
            # Compare every one in constant time, so timing tells nothing of the secrets.
            if hmac.compare_digest(subscription.secret.encode(), secret.encode()):
                found = subscription
        return found

    def notification_receive(
        self, subscription: HubSubscription, body: Any
    ) -> ReceivedNotification:
        """Act on a notification for subscription; body is the Consent, or None (no payload).

        With a payload, a Consent no longer active revokes every consent held under it.
        Without one (FHIR R4 rest-hook, empty payload: "something changed"), the Consent
        is read again from the hub in the background.
        """
        if body is None:
            received = ReceivedNotification(
                received_at=_now(),
                consent_url=subscription.consent_url,
                consent_id=subscription.consent_id,
                status="",
            )
            if self._client is not None:
                consent = hub_consent_of(subscription.consent_url)
                if consent is not None:
                    self._enqueue(_Job(consent, subscribe=False))
        else:
            status = _notified_status(body, consent_id=subscription.consent_id)
            revoked = (
                self._withdraw(subscription.consent_url, status) if status != CONSENT_ACTIVE else []
            )
            received = ReceivedNotification(
                received_at=_now(),
                consent_url=subscription.consent_url,
                consent_id=subscription.consent_id,
                status=status,
                revoked_consents=revoked,
            )
        with self._lock:
            self._notifications = [*self._notifications, received][-NOTIFICATIONS_KEPT:]
            self._save()
        logger.info(
            "notification for %s: status %r, revoked %s",
            received.consent_url,
            received.status,
            received.revoked_consents,
        )
        return received

    def published(self) -> dict[str, Any]:
        """Return the subscriptions (without secrets) and the notifications received."""
        with self._lock:
            return {
                "subscriptions": [s.published() for s in self._subscriptions.values()],
                "notifications": [asdict(n) for n in self._notifications],
            }


def _notified_status(body: Any, *, consent_id: str) -> str:
    """Return the status of the Consent a notification carries, or raise 400/422 naming why."""
    if not isinstance(body, dict) or body.get("resourceType") != "Consent":
        raise FhirError(400, "invalid", "the notification's payload must be a Consent resource")
    if body.get("id") != consent_id:
        raise FhirError(
            422,
            "business-rule",
            f"this subscription is to Consent/{consent_id}, not Consent/{body.get('id')}",
        )
    require_valid(Consent, body)
    return str(body["status"])
