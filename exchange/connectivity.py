"""The *Test* of a payer's FHIR endpoint: can the hub fetch records there?

The checks are the compatibility radar's (exchange/radar/probe.py), run at once with one
attempt per call because an administrator waits for the answer; the result joins the
endpoint's probe history like a scheduled probe, and what it found is kept in
``FhirEndpoint.capabilities`` with the time of the check.
"""

from exchange.radar.probe import endpoint_probe
from exchange.radar.services import endpoint_probe_record
from hub.connectivity import ConnectivityReport
from hub.models import FhirEndpoint, Payer, ProbeTrigger, User


def fhir_endpoint_check(
    *, endpoint: FhirEndpoint, requesting_payer: Payer | None = None, actor: User | None = None
) -> ConnectivityReport:
    """Test ``endpoint`` as the hub will use it; keep what was found in its probe history.

    The token is obtained as ``requesting_payer`` (registering the hub there when the
    holder allows it), or as the endpoint's own payer when none is given.
    """
    result = endpoint_probe(endpoint=endpoint, requesting_payer=requesting_payer, max_attempts=1)
    endpoint_probe_record(endpoint=endpoint, result=result, trigger=ProbeTrigger.TEST, actor=actor)
    return result.report
