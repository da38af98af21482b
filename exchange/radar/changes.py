"""What changed at a holder between two probes, in sentences an operator or a plan
administrator can act on (the radar alerts on them and keeps them for ever)."""

from typing import Any

from exchange.radar.probe import TOKEN_FAILED, TOKEN_OK
from hub.models import EndpointProbe

# The operations whose loss changes the engine's path (exchange/radar/selectors.py).
_PATH_OPERATIONS = {
    "everything": "records are fetched by searches per resource type instead",
    "member-match": "members are matched only by signing in there (member-authorized), if offered",
    "bulk-member-match": "cohorts are matched one member at a time",
    "davinci-data-export": "cohorts use the standard Group $export, if offered",
    "export": "cohorts need $davinci-data-export",
}


def _sentences_of_sets(
    before: list[str], after: list[str], *, lost: str, gained: str, explain: dict[str, str]
) -> list[dict[str, str]]:
    changes = []
    for name in sorted(set(before) - set(after)):
        because = f": {explain[name]}" if name in explain else ""
        changes.append(
            {"kind": "lost", "what": name, "sentence": lost.format(name) + because + "."}
        )
    for name in sorted(set(after) - set(before)):
        changes.append({"kind": "gained", "what": name, "sentence": gained.format(name) + "."})
    return changes


def probe_changes(
    *, previous: EndpointProbe | None, summary: dict[str, Any], ok: bool, headline: str
) -> list[dict[str, str]]:
    """Return what changed since ``previous`` (nothing for an endpoint's first probe).

    The offers are compared only when both probes read the CapabilityStatement: a probe
    that could not read it knows nothing of them.
    """
    if previous is None:
        return []
    changes: list[dict[str, str]] = []
    if previous.ok and not ok:
        changes.append(
            {"kind": "failing", "what": "probe", "sentence": f"The probe now fails: {headline}"}
        )
    elif ok and not previous.ok:
        changes.append({"kind": "passing", "what": "probe", "sentence": "The probe passes again."})
    before = previous.summary or {}
    if not before or not summary:
        return changes
    if before.get("fhir_version") != summary.get("fhir_version"):
        changes.append({
            "kind": "changed", "what": "fhir_version",
            "sentence": f"The FHIR version changed from {before.get('fhir_version') or 'none'} to "
            f"{summary.get('fhir_version') or 'none'}.",
        })  # fmt: skip
    changes += _sentences_of_sets(
        before.get("operations") or [], summary.get("operations") or [],
        lost="No longer offers ${}", gained="Now offers ${}", explain=_PATH_OPERATIONS,
    )  # fmt: skip
    changes += _sentences_of_sets(
        before.get("patient_search_types") or [], summary.get("patient_search_types") or [],
        lost="{} can no longer be searched by patient", gained="{} can now be searched by patient",
        explain={},
    )  # fmt: skip
    changes += _sentences_of_sets(
        before.get("bulk_output_formats") or [], summary.get("bulk_output_formats") or [],
        lost="Bulk output no longer comes as {}", gained="Bulk output now comes as {}", explain={},
    )  # fmt: skip
    for key, name in (
        ("smart_configuration", "SMART configuration"),
        ("davinci_configuration", "Da Vinci configuration"),
    ):
        was, now = before.get(key), summary.get(key)
        if was is not None and now is not None and was != now:
            state = "now publishes" if now else "no longer publishes"
            changes.append(
                {"kind": "changed", "what": key, "sentence": f"The server {state} its {name}."}
            )
    was_token, token = before.get("token"), summary.get("token")
    if {was_token, token} == {TOKEN_OK, TOKEN_FAILED}:
        sentence = (
            "The payer-to-payer token now fails."
            if token == TOKEN_FAILED
            else "The payer-to-payer token is obtained again."
        )
        changes.append({"kind": "changed", "what": "token", "sentence": sentence})
    return changes
