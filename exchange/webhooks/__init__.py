"""Signed webhooks to payer systems (issue 13 item 4), per Standard Webhooks
(https://www.standardwebhooks.com).

A plan administrator registers endpoints (URL, event types) in the portal; each has a
signing secret ``whsec_…`` shown once, rotated with an overlap during which both the old and
the new secret sign. Every event becomes one message per subscribed endpoint, written in
the transaction of the change and sent once it commits (events.py); a message is POSTed
through the one outbound client, signed (signing.py, with the receiver's verification
recipe), retried on the Standard Webhooks schedule (sending.py, tasks.py), each try logged.

Every message is the Standard Webhooks envelope, as compact JSON with sorted keys::

    {"type": "<event type>", "timestamp": "<ISO 8601, when the event happened>", "data": {...}}

with headers ``webhook-id`` (``msg_…``, the same on every try: de-duplicate on it),
``webhook-timestamp`` (unix seconds of this try) and ``webhook-signature``.

Event types and their ``data`` — ids, states and checksums only, never PHI (no names, no
demographics, no record content):

``request.status_changed``
    A request of the payer's member (the payer being the *new* payer) moved::

        {"request_id": 42, "from": "delivering", "to": "delivered",
         "reason_code": "", "at": "2026-12-02T05:15:27.123456+00:00"}

    ``reason_code`` is set when the request ended in ``failed`` and the like
    (e.g. ``gave_up_retrying``), else "".
``delivery.ready``
    A request's package was delivered (pushed to the payer's SFTP server, or placed in the
    hub repository to collect)::

        {"request_id": 42, "remote_directory": "inbound/south/42",
         "files": [{"path": "inbound/south/42/bundle.json", "size": 18234,
                    "sha256": "9f86d0…"}, ...],
         "delivered_at": "2026-12-02T05:15:27.123456+00:00"}

``request.due_soon`` / ``request.overdue``
    A request not yet delivered nears its due date (EXCHANGE_DUE_SOON_HOURS before it), or
    passed it (exchange/deadlines.py; once each)::

        {"request_id": 42, "status": "retrieving", "due_by": "2026-12-09T14:03:00+00:00"}

``webhook.test``
    Sent only by the portal's *Send test event*::

        {"endpoint_id": 7, "requested_at": "2026-12-02T05:15:27.123456+00:00"}
"""
