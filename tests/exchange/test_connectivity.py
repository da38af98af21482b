"""The FHIR endpoint *Test* against a running sandbox payer, and against what is not one."""

from typing import Any

from exchange.connectivity import fhir_endpoint_check
from tests.conftest import Tenant
from tests.exchange.holder_proxy import holder_proxy, on_path
from tests.exchange.holders import endpoint_of, former_payer_of, hub_url
from tests.sandbox.harness import RunningSandbox
from tests.support.net import free_loopback_port


def steps(report: Any) -> list[tuple[str, bool]]:
    return [(step.name, step.ok) for step in report.steps]


def test_a_sandbox_payer_passes_and_its_operations_are_kept(
    hub: Tenant, holder: RunningSandbox
) -> None:
    endpoint = endpoint_of(former_payer_of(holder))

    report = fhir_endpoint_check(endpoint=endpoint, requesting_payer=hub.payer)

    assert report.ok, report.as_dict()
    assert steps(report) == [
        ("Read the CapabilityStatement", True),
        ("List the operations", True),
        ("Read the SMART configuration", True),
        ("Read the Da Vinci configuration", True),
        ("Check the bulk output format", True),
        ("Get a payer-to-payer token", True),
    ]
    details = [step.detail for step in report.steps]
    assert details[1].startswith("Offers $member-match, $everything")
    assert f"Tokens at {holder.base}/auth/token" in details[2]
    assert details[3] == "Not published (optional; nothing to do)."
    assert details[4].startswith(
        "Group exports ($davinci-data-export) come as application/fhir+ndjson"
    )
    assert "as North Star Health" in details[5]
    endpoint.refresh_from_db()
    assert endpoint.capabilities["fhir_version"] == "4.0.1"
    assert {"member-match", "everything"} <= set(endpoint.capabilities["operations"])
    assert "Condition" in endpoint.capabilities["patient_search_types"]
    assert endpoint.capabilities_checked_at is not None


def test_without_a_requesting_payer_the_endpoints_own_payer_is_tried(
    holder: RunningSandbox, north: Tenant
) -> None:
    endpoint = endpoint_of(former_payer_of(holder))

    report = fhir_endpoint_check(endpoint=endpoint)

    # The former payer has no signing key in the hub: the token step says so.
    assert report.ok
    assert report.steps[-1].detail.startswith("Not tried: Former Health Plan has no signing key")


def test_a_page_that_is_not_fhir_is_named_so(
    live_server: Any, holder: RunningSandbox, north: Tenant
) -> None:
    # The hub's own health page: a web server, not a FHIR one.
    endpoint = endpoint_of(former_payer_of(holder, base_url=f"{hub_url(live_server)}/healthz"))

    report = fhir_endpoint_check(endpoint=endpoint)

    assert not report.ok
    assert steps(report) == [("Read the CapabilityStatement", False)]
    assert "does not answer like a FHIR server" in report.steps[0].detail
    assert "Check the FHIR base URL." in report.steps[0].detail
    endpoint.refresh_from_db()
    assert endpoint.capabilities_checked_at is None


def test_an_unreachable_port_is_named_so(holder: RunningSandbox, north: Tenant) -> None:
    endpoint = endpoint_of(
        former_payer_of(holder, base_url=f"http://127.0.0.1:{free_loopback_port()}/fhir")
    )

    report = fhir_endpoint_check(endpoint=endpoint)

    assert steps(report) == [("Read the CapabilityStatement", False)]
    assert report.steps[0].detail.startswith("Former Health Plan's server could not be reached")


def test_another_fhir_version_is_named(hub: Tenant, holder: RunningSandbox) -> None:
    with holder_proxy(holder) as proxy:
        proxy.rewrites.append(
            on_path("metadata", lambda body: body.replace(b'"4.0.1"', b'"3.0.2"'))
        )
        endpoint = endpoint_of(former_payer_of(holder, base_url=proxy.fhir))

        report = fhir_endpoint_check(endpoint=endpoint, requesting_payer=hub.payer)

    assert not report.ok
    assert report.steps[0].detail == (
        "The server speaks FHIR 3.0.2; the hub exchanges FHIR R4 (4.0.1)."
    )


def test_a_refused_token_is_reported_in_the_holders_words(
    hub: Tenant, holder: RunningSandbox
) -> None:
    # A backend-services client may only ask for system scopes.
    endpoint = endpoint_of(former_payer_of(holder, scopes="patient/*.rs"))

    report = fhir_endpoint_check(endpoint=endpoint, requesting_payer=hub.payer)

    assert steps(report)[-1] == ("Get a payer-to-payer token", False)
    assert report.steps[-1].detail.startswith(
        "No token: Former Health Plan refused the hub's token request (invalid_scope: "
    )
