"""The operator console's *Compatibility radar*: every payer's probes, changes highlighted,
read-only, each look audited."""

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from hub.models import AuditEvent, EndpointProbe, FhirEndpoint, ProbeTrigger
from tests.conftest import Tenant
from tests.factories import FhirEndpointFactory


def test_operators_see_every_payers_probes_with_changes_highlighted(
    console: Client, north: Tenant, south: Tenant
) -> None:
    for tenant, changes in ((north, []), (south, [{"sentence": "No longer offers $everything."}])):
        endpoint: FhirEndpoint = FhirEndpointFactory(payer=tenant.payer)
        EndpointProbe.objects.create(
            payer=tenant.payer, endpoint=endpoint, checked_at=timezone.now() - timedelta(hours=1),
            trigger=ProbeTrigger.RADAR, ok=True, summary={}, changes=changes,
        )  # fmt: skip

    page = console.get("/operator/").content.decode()
    assert "Compatibility radar" in page
    page = console.get("/operator/hub/endpointprobe/?changed=yes").content.decode()
    assert "No longer offers $everything." in page and "#b50909" in page
    assert page.count("field-what_changed") == 1  # South's only: North's changed nothing
    assert AuditEvent.objects.for_payer(south.payer).filter(action="operator.look").exists()
    probe = EndpointProbe.objects.for_payer(south.payer).get()
    detail = console.get(f"/operator/hub/endpointprobe/{probe.pk}/change/")
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()


def test_a_plan_administrator_cannot_open_the_radar(north: Tenant) -> None:
    client = Client()
    client.force_login(north.admin)
    assert client.get("/operator/hub/endpointprobe/").status_code == 302
