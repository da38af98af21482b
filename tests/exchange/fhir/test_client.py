"""The FHIR client against a running sandbox payer: answers checked, errors sorted and worded."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from exchange.fhir.client import FhirClient, retry_after_seconds
from exchange.fhir.errors import FhirPermanentError, FhirTransientError
from hub.outbound import PayerHttpClient
from tests.sandbox.harness import FORMER, SEED, BackendClient, RunningSandbox, running_sandbox
from tests.support.net import free_loopback_port


@pytest.fixture(scope="module")
def throttling_holder() -> Iterator[RunningSandbox]:
    """A holder that answers every data request 429 with a long Retry-After."""
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "4", "--faults", "429=1.0,retry-after=45s"
    ) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def token(holder: RunningSandbox) -> str:
    return BackendClient(sandbox=holder, organization_npi="1234567893").register().token()


def client_for(sandbox: RunningSandbox, http: PayerHttpClient, **kwargs: object) -> FhirClient:
    return FhirClient(base_url=sandbox.fhir, holder_name="Former Health Plan", http=http, **kwargs)


def test_a_4xx_operation_outcome_is_permanent_in_the_holders_words(
    holder: RunningSandbox, http: PayerHttpClient, token: str
) -> None:
    fhir = client_for(holder, http, token_provider=lambda refresh: token)

    with pytest.raises(FhirPermanentError) as refused:
        fhir.bundle_page("Condition", params={"colour": "blue"})

    assert refused.value.code == "rejected"
    assert refused.value.status == 400
    assert refused.value.message == (
        "Former Health Plan's server refused the request (HTTP 400): "
        "unknown search parameter 'colour' for Condition."
    )


def test_a_401_renews_the_token_once_and_then_gives_up(
    holder: RunningSandbox, http: PayerHttpClient
) -> None:
    asked: list[bool] = []

    def stale_token(force_refresh: bool) -> str:
        asked.append(force_refresh)
        return "a-token-the-holder-never-issued"

    fhir = client_for(holder, http, token_provider=stale_token)
    with pytest.raises(FhirPermanentError) as refused:
        fhir.bundle_page("Condition", params={"patient": "for000001"})

    assert asked == [False, True, False]
    assert refused.value.code == "unauthorized"
    assert "no longer accepts the hub's authorization" in refused.value.message


def test_a_401_with_a_renewed_token_succeeds(
    holder: RunningSandbox, http: PayerHttpClient, token: str
) -> None:
    asked: list[bool] = []

    def renewing(force_refresh: bool) -> str:
        asked.append(force_refresh)
        return token if force_refresh or len(asked) > 2 else "an-ended-token"

    fhir = client_for(holder, http, token_provider=renewing)

    consents = fhir.bundle_page("Consent")

    assert consents["type"] == "searchset"
    assert asked == [False, True, False]


def test_an_answer_of_another_type_is_refused(
    holder: RunningSandbox, http: PayerHttpClient
) -> None:
    with pytest.raises(FhirPermanentError) as refused:
        client_for(holder, http).bundle_page("metadata")
    assert refused.value.code == "wrong_resource_type"
    assert refused.value.message == (
        "Former Health Plan's server sent a CapabilityStatement where a Bundle was expected."
    )


def test_a_retry_after_longer_than_the_client_waits_goes_to_the_caller(
    throttling_holder: RunningSandbox, http: PayerHttpClient
) -> None:
    fhir = client_for(throttling_holder, http, token_provider=lambda refresh: "any")

    with pytest.raises(FhirTransientError) as throttled:
        fhir.bundle_page("Condition", params={"patient": "for000001"})

    assert throttled.value.code == "throttled"
    assert throttled.value.retry_after == 45
    assert fhir.retry_waits == []
    assert "asked the hub to slow down (HTTP 429): injected fault: 429" in throttled.value.message


def test_an_unreachable_server_is_transient_after_bounded_retries(http: PayerHttpClient) -> None:
    port = free_loopback_port()
    fhir = FhirClient(
        base_url=f"http://127.0.0.1:{port}/fhir",
        holder_name="Gone Health",
        http=http,
        max_attempts=2,
    )

    with pytest.raises(FhirTransientError) as unreachable:
        fhir.read("metadata", resource_type="CapabilityStatement")

    assert unreachable.value.code == "network"
    assert fhir.retry_waits == [1.0]
    assert unreachable.value.message.startswith("Gone Health's server could not be reached")


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert retry_after_seconds("7") == 7
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
