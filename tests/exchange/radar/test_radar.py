"""The compatibility radar against a running sandbox payer: history, changes, alerts, and the
engine's path from the latest probe; a holder answering with HTML; the pages that show it."""

import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from directory.selectors import directory_entries
from exchange.fhir.errors import FhirPermanentError
from exchange.member_match import member_match_run
from exchange.models import AuthorizationMode
from exchange.payloads.storage import LocalPayloadStorage
from exchange.radar.services import holder_capabilities, radar_probe_endpoint, radar_probes_prune
from exchange.retrieval import records_retrieve
from exchange.services import authorization_mode_for
from hub.models import AuditEvent, EndpointProbe, FhirEndpoint, ProbeTrigger, Role
from tests.conftest import Tenant
from tests.exchange.holder_proxy import holder_proxy
from tests.exchange.holders import endpoint_of, former_payer_of, member_request, ordinary_member
from tests.factories import FhirEndpointFactory, UserFactory
from tests.sandbox.harness import RunningSandbox


def offer(sandbox: RunningSandbox, operation: str, *, offered: bool) -> None:
    """Withdraw an operation at the sandbox, or offer it again (POST /sandbox/operations/...)."""
    request = urllib.request.Request(  # noqa: S310 - the sandbox on loopback
        f"{sandbox.base}/sandbox/operations/{operation}",
        data=json.dumps({"offered": offered}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


@pytest.fixture
def everything_restored(holder: RunningSandbox) -> Iterator[RunningSandbox]:
    """The module's sandbox, offering $everything again after the test whatever happens."""
    yield holder
    offer(holder, "everything", offered=True)


def probe_now(endpoint: FhirEndpoint) -> EndpointProbe:
    # The next scheduled run: the claim of the last one has lapsed.
    FhirEndpoint.objects.for_payer(endpoint.payer_id).filter(pk=endpoint.pk).update(
        radar_claimed_at=None
    )
    probe = radar_probe_endpoint(endpoint_id=endpoint.pk, payer_id=endpoint.payer_id)
    assert probe is not None
    return probe


def test_a_holder_losing_everything_is_recorded_alerted_and_the_engine_searches_instead(
    hub: Tenant,
    everything_restored: RunningSandbox,
    tmp_path: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    holder = everything_restored
    member = ordinary_member(holder, 2)
    with holder_proxy(holder) as proxy:
        former = former_payer_of(holder, base_url=proxy.fhir)
        UserFactory(payer=former, role=Role.PLAN_ADMIN, email="admin@former.example")
        UserFactory(payer=None, role="", is_staff=True, email="ops@hub.example")
        endpoint = endpoint_of(former)
        request = member_request(tenant=hub, former_payer=former, member=member)
        # North is registered at the holder by its match: the radar's token is North's.
        assert member_match_run(exchange_request=request).patient_id == member["patient_id"]

        first = radar_probe_endpoint(endpoint_id=endpoint.pk, payer_id=former.pk)
        assert first is not None and first.ok, first.steps
        assert "everything" in first.summary["operations"]
        assert first.summary["token"] == "ok"
        assert first.summary["bulk_output_formats"] == ["application/fhir+ndjson"]
        assert first.summary["davinci_configuration"] is False
        assert [s["name"] for s in first.steps] == [
            "Read the CapabilityStatement",
            "List the operations",
            "Read the SMART configuration",
            "Read the Da Vinci configuration",
            "Check the bulk output format",
            "Get a payer-to-payer token",
        ]
        assert "as North Star Health" in first.steps[-1]["detail"]
        assert first.changes == []
        # The same run delivered twice probes once (the claim is taken).
        assert radar_probe_endpoint(endpoint_id=endpoint.pk, payer_id=former.pk) is None

        offer(holder, "everything", offered=False)
        with django_capture_on_commit_callbacks(execute=True):
            changed = probe_now(endpoint)

        assert changed.ok
        assert [c["sentence"] for c in changed.changes] == [
            "No longer offers $everything: records are fetched by searches per resource type "
            "instead."
        ]
        assert (
            AuditEvent.objects.for_payer(former)
            .filter(action="fhir_endpoint.probe_changed", object_id=str(changed.pk))
            .exists()
        )
        assert sorted(m.to[0] for m in mail.outbox) == ["admin@former.example", "ops@hub.example"]
        assert "No longer offers $everything" in mail.outbox[0].subject
        changed.refresh_from_db()
        assert changed.alerted_at is not None

        asked_before = len(proxy.received)
        result = records_retrieve(exchange_request=request, storage=LocalPayloadStorage(tmp_path))
        asked = [path for _, path, _ in proxy.received[asked_before:]]

    assert result.mode == "search" and result.complete
    request.refresh_from_db()
    assert request.retrieval_cursor["mode"] == "search"
    assert not any("$everything" in path for path in asked)
    # The engine read the probe; it did not ask for the CapabilityStatement again.
    assert not any(path.startswith("/fhir/metadata") for path in asked)
    assert any(path.startswith("/fhir/Condition?") for path in asked)
    assert result.resource_counts.get("Patient") == 1
    assert EndpointProbe.objects.for_payer(former).count() == 2


@contextmanager
def html_server() -> Iterator[str]:
    """A web server that answers every path with a sign-in page, as a portal would."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = b"<!doctype html><html><body><h1>Sign in</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/portal"
    finally:
        server.shutdown()
        server.server_close()


def test_a_holder_answering_with_html_is_recorded_with_what_to_fix(north: Tenant) -> None:
    with html_server() as base_url:
        endpoint = FhirEndpointFactory(payer=north.payer, base_url=base_url)
        probe = radar_probe_endpoint(endpoint_id=endpoint.pk, payer_id=north.payer.pk)
        assert probe is not None
        # The engine, asked to fetch there, fails with the same sentence (and records it).
        with pytest.raises(FhirPermanentError, match="with an HTML page"):
            holder_capabilities(endpoint=endpoint)

    assert not probe.ok
    assert probe.summary == {}
    assert probe.headline == (
        f"{base_url}/metadata answers with an HTML page, not a FHIR CapabilityStatement; check "
        "the FHIR base URL (the address FHIR requests go to, often ending in /fhir or /r4)."
    )
    assert [p.trigger for p in EndpointProbe.objects.for_payer(north.payer)] == [
        ProbeTrigger.RADAR,
        ProbeTrigger.ENGINE,
    ]


def _probe(endpoint: FhirEndpoint, *, hours_ago: float, **fields: Any) -> EndpointProbe:
    values = {"ok": True, "trigger": ProbeTrigger.RADAR, "summary": {"operations": []}} | fields
    return EndpointProbe.objects.create(
        payer_id=endpoint.payer_id,
        endpoint=endpoint,
        checked_at=timezone.now() - timedelta(hours=hours_ago),
        **values,
    )


def test_the_history_keeps_changes_for_ever_and_prunes_repeats(north: Tenant) -> None:
    endpoint = FhirEndpointFactory(payer=north.payer)
    old_repeat = _probe(endpoint, hours_ago=24 * 40)
    old_change = _probe(endpoint, hours_ago=24 * 39, changes=[{"sentence": "Now offers $export."}])
    recent = _probe(endpoint, hours_ago=1)
    only_other = _probe(FhirEndpointFactory(), hours_ago=24 * 90)

    assert radar_probes_prune(now=timezone.now()) == 1

    kept = set(EndpointProbe.objects.across_payers(reason="test").values_list("pk", flat=True))
    assert kept == {old_change.pk, recent.pk, only_other.pk}
    assert old_repeat.pk not in kept


def test_a_recent_probe_without_member_match_sends_members_to_sign_in_there(
    north: Tenant, south: Tenant
) -> None:
    endpoint = FhirEndpointFactory(
        payer=south.payer, offers_backend_services=True, offers_member_authorization=True
    )
    assert authorization_mode_for(south.payer) == AuthorizationMode.BACKEND_SERVICES
    _probe(endpoint, hours_ago=48, summary={"operations": ["everything"]})
    # Too old to decide by: the settings do.
    assert authorization_mode_for(south.payer) == AuthorizationMode.BACKEND_SERVICES
    _probe(endpoint, hours_ago=1, summary={"operations": ["everything"]})
    assert authorization_mode_for(south.payer) == AuthorizationMode.MEMBER_AUTHORIZED


def test_the_pages_show_the_last_probe_and_change_and_other_payers_get_a_404(
    north: Tenant, south: Tenant
) -> None:
    endpoint = FhirEndpointFactory(payer=south.payer)
    _probe(endpoint, hours_ago=3, changes=[{"sentence": "No longer offers $everything."}])
    _probe(
        endpoint,
        hours_ago=1,
        ok=False,
        steps=[{"name": "Read the CapabilityStatement", "ok": False, "detail": "Fix the URL."}],
    )
    south_admin = Client()
    south_admin.force_login(south.admin)
    page = south_admin.get(reverse("plan_admin:settings", args=["south"])).content.decode()
    assert "Last probe:" in page and "failed" in page and "Fix the URL." in page
    assert "No longer offers $everything." in page

    (entry,) = [e for e in directory_entries(payer=north.payer) if e.payer == south.payer]
    assert entry.endpoint_status == "Failing the hub's checks"
    assert entry.last_probe_ok is False

    north_admin = Client()
    north_admin.force_login(north.admin)
    page = north_admin.get(reverse("plan_admin:directory", args=["north"])).content.decode()
    assert "Failing the hub&#x27;s checks" in page and "Last probe:" in page
    page = north_admin.get(reverse("plan_admin:former-payers", args=["north"])).content.decode()
    assert "Fix the URL." in page
    # South's integration page is South's alone.
    assert north_admin.get(reverse("plan_admin:settings", args=["south"])).status_code == 404


def test_beat_probes_every_endpoint_every_six_hours_by_default(settings: Any) -> None:
    from exchange.radar.tasks import radar_probe_all, radar_probe_endpoint

    assert settings.CELERY_BEAT_SCHEDULE["radar-probe-all"] == {
        "task": "exchange.radar_probe_all",
        "schedule": 6 * 60 * 60,
    }
    assert radar_probe_all.name == "exchange.radar_probe_all"
    assert radar_probe_endpoint.name == "exchange.radar_probe_endpoint"
