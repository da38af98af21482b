"""Which Group export a holder's CapabilityStatement leads to."""

import pytest

from exchange.fhir.capabilities import capability_summary, group_export_operation
from exchange.fhir.client import FhirClient
from hub.outbound import PayerHttpClient
from tests.sandbox.harness import FORMER, RunningSandbox


def test_a_pdex_holder_exports_with_davinci_data_export(
    holder: RunningSandbox, http: PayerHttpClient
) -> None:
    fhir = FhirClient(base_url=holder.fhir, holder_name=FORMER, http=http)
    statement = fhir.read("metadata", resource_type="CapabilityStatement")

    assert group_export_operation(capability_summary(statement)) == "davinci-data-export"


@pytest.mark.parametrize(
    ("operations", "chosen"),
    [
        (["bulk-member-match", "export", "davinci-data-export"], "davinci-data-export"),
        (["bulk-member-match", "export"], "export"),
        (["member-match", "everything"], None),
    ],
)
def test_the_standard_export_is_the_fallback(operations: list[str], chosen: str | None) -> None:
    assert group_export_operation({"operations": operations}) == chosen
