"""Time the plan-admin request pages with 100,000 requests for one payer.

Seeds (once; reused on later runs) a payer "bench-north" with 100,000 exchange requests
spread over a year, five former payers, 2,000 members, one timeline event per request
and a delivery per delivered request, all with bulk_create. Then times, through the
full Django stack (middleware, tenancy, templates), the list page, filters, search,
a deep page, the streaming CSV export, the compliance page and the former-payer view,
and counts their SQL queries.

Run (with the environment of the database to use; it is migrated first):
    .venv/bin/python bench/plan_admin_requests.py [--requests 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from exchange.consents.resource import hrex_consent_resource  # noqa: E402
from exchange.models import (  # noqa: E402
    AuthorizationMode,
    Consent,
    ConsentPolicy,
    Delivery,
    DeliveryStatus,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
)
from hub.models import Payer, PayerStatus, Role, User  # noqa: E402

SLUG = "bench-north"
MEMBERS = 2_000
BATCH = 5_000
# A plausible mix: most delivered, some in flight, a few failures and other ends.
STATUS_WEIGHTS = {
    ExchangeStatus.DELIVERED: 60, ExchangeStatus.FAILED: 6, ExchangeStatus.NO_MATCH: 5,
    ExchangeStatus.RETRIEVING: 5, ExchangeStatus.CONSENTED: 5, ExchangeStatus.MATCHING: 4,
    ExchangeStatus.AWAITING_AUTHORIZATION: 5, ExchangeStatus.CANCELLED: 3, ExchangeStatus.REVOKED: 3,
    ExchangeStatus.DELIVERING: 4,
}  # fmt: skip
FAILURE_REASONS = ["endpoint_unreachable", "token_refused", "host_key_mismatch", "timeout"]


@transaction.atomic
def seed(
    requests: int, *, slug: str = SLUG, name: str = "Bench North Health", npi: str = ""
) -> tuple[Payer, User, User]:
    """Create the bench payer ``slug`` and its rows unless they exist (the five former payers
    are shared by every bench payer); return (payer, its admin, a former admin)."""
    payer, _ = Payer.objects.get_or_create(
        slug=slug,
        defaults={
            "name": name,
            "status": PayerStatus.PARTICIPATING,
            "payer_identifier": slug.upper(),
            "npi": npi,
        },
    )
    formers = [
        Payer.objects.get_or_create(
            slug=f"bench-former-{i}",
            defaults={
                "name": f"Bench Former Plan {i}",
                "status": PayerStatus.PARTICIPATING,
                "payer_identifier": f"BENCH-FORMER-{i}",
            },
        )[0]
        for i in range(5)
    ]
    admin, _ = User.objects.get_or_create(
        username=f"{slug}-admin", defaults={"payer": payer, "role": Role.PLAN_ADMIN}
    )
    former_admin, _ = User.objects.get_or_create(
        username="bench-former-admin", defaults={"payer": formers[0], "role": Role.PLAN_ADMIN}
    )
    existing = ExchangeRequest.objects.for_payer(payer).count()
    if existing >= requests:
        print(f"reusing {existing:,} seeded requests of {slug}")
        return payer, admin, former_admin

    started = time.monotonic()
    rng = random.Random(6)
    members = User.objects.bulk_create(
        User(username=f"{slug}-member-{i}", first_name=f"Given{i}", last_name=f"Family{i}",
             payer=payer, role=Role.MEMBER, oidc_subject=f"{slug}-{i}")
        for i in range(MEMBERS)
    )  # fmt: skip
    today = timezone.localdate()
    consent_template = hrex_consent_resource(
        patient_id="member", former_payer=formers[0], new_payer=payer,
        policy=ConsentPolicy.SENSITIVE, period_start=today, period_end=today + timedelta(days=365),
        source_document_url="https://hub.example/consents/bench.pdf",
    )  # fmt: skip
    now = timezone.now()
    consents = Consent.objects.bulk_create(
        Consent(payer=payer, member=member, former_payer=formers[i % 5], policy=ConsentPolicy.SENSITIVE,
                period_start=today, period_end=today + timedelta(days=365), fhir_resource=consent_template,
                opted_in_at=now)
        for i, member in enumerate(members)
    )  # fmt: skip
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    for offset in range(existing, requests, BATCH):
        rows = []
        for _ in range(min(BATCH, requests - offset)):
            consent = rng.choice(consents)
            opted_in = now - timedelta(seconds=rng.randint(0, 365 * 86400))
            status = rng.choices(statuses, weights)[0]
            changed = opted_in + timedelta(hours=rng.uniform(0.2, 200))
            rows.append(ExchangeRequest(
                payer=payer, member_id=consent.member_id, former_payer_id=consent.former_payer_id,
                consent=consent, authorization_mode=AuthorizationMode.BACKEND_SERVICES, status=status,
                status_changed_at=min(changed, now), opted_in_at=opted_in,
                due_by=opted_in + timedelta(days=7), card_member_id="BENCH-CARD",
                coverage_start=date(2021, 1, 1),
                reason_code=rng.choice(FAILURE_REASONS) if status == ExchangeStatus.FAILED else "",
                resource_counts={"ExplanationOfBenefit": rng.randint(5, 400)},
            ))  # fmt: skip
        created_rows = ExchangeRequest.objects.bulk_create(rows)
        ExchangeEvent.objects.bulk_create(
            ExchangeEvent(payer=payer, exchange_request=r, status=ExchangeStatus.MATCHING,
                          message="Asked the former payer.")
            for r in created_rows
        )  # fmt: skip
        Delivery.objects.bulk_create(
            Delivery(payer=payer, exchange_request=r, mode="hub_repository",
                     status=DeliveryStatus.DELIVERED, delivered_at=r.status_changed_at)
            for r in created_rows
            if r.status == ExchangeStatus.DELIVERED
        )  # fmt: skip
    # Events were stamped "now" by auto_now_add; move them to 0-200 hours after each opt-in,
    # so some requests were asked late.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE exchange_exchangeevent e "
            "SET created_at = r.opted_in_at + interval '1 hour' * (random() * 200) "
            "FROM exchange_exchangerequest r WHERE e.exchange_request_id = r.id AND r.payer_id = %s",
            [payer.pk],
        )
        cursor.execute("ANALYZE")
    print(f"seeded {requests - existing:,} requests in {time.monotonic() - started:.1f} s")
    return payer, admin, former_admin


def measure(client: Client, label: str, url: str, repeat: int) -> dict[str, Any]:
    """GET ``url`` ``repeat`` times (reading streamed bodies fully); return the median and queries."""
    timings = []
    queries = 0
    size = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            body = response.getvalue()
            timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{label}: HTTP {response.status_code}")
        queries, size = len(captured), len(body)
    return {"label": label, "median_ms": statistics.median(timings) * 1000,
            "min_ms": min(timings) * 1000, "queries": queries, "bytes": size}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    payer, admin, former_admin = seed(args.requests)
    client = Client()
    client.force_login(admin)
    base = f"/p/{payer.slug}/admin"
    former = Payer.objects.get(slug="bench-former-2")
    since = (timezone.localdate() - timedelta(days=30)).isoformat()
    cases = [
        ("list, page 1", f"{base}/requests/"),
        ("list, page 1,000 (offset 49,950)", f"{base}/requests/?page=1000"),
        ("filter: status = failed", f"{base}/requests/?status=failed"),
        ("filter: overdue", f"{base}/requests/?overdue=on"),
        ("filter: former payer + last 30 days", f"{base}/requests/?former_payer={former.pk}&opted_in_from={since}"),
        ("search: member 'Family123'", f"{base}/requests/?member=Family123"),
        ("sort: due soonest", f"{base}/requests/?sort=due_by"),
        ("CSV export, all 100,000", f"{base}/requests/export.csv"),
        ("CSV export, status = failed", f"{base}/requests/export.csv?status=failed"),
        ("compliance page (last year)", f"{base}/compliance/?days=365"),
    ]  # fmt: skip
    results = [measure(client, label, url, args.repeat) for label, url in cases]
    former_client = Client()
    former_client.force_login(former_admin)
    results.append(
        measure(former_client, "requests to us as former payer",
                f"/p/{former_admin.payer.slug}/admin/as-former-payer/", args.repeat)  # type: ignore[union-attr]
    )  # fmt: skip
    total = ExchangeRequest.objects.for_payer(payer).count()
    print(
        f"\n{total:,} requests of {payer.name}; median of {args.repeat} runs, full Django stack\n"
    )
    print(f"| {'measure':<40} | {'median':>9} | {'best':>9} | {'queries':>7} | {'bytes':>10} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 11}|{'-' * 9}|{'-' * 12}|")
    for r in results:
        print(f"| {r['label']:<40} | {r['median_ms']:>6.0f} ms | {r['min_ms']:>6.0f} ms "
              f"| {r['queries']:>7} | {r['bytes']:>10,} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
