"""FHIR instants as the hub writes them: UTC, to the second (FHIR R4 §2.24.0.1 ``instant``)."""

from datetime import UTC, datetime


def fhir_instant(moment: datetime) -> str:
    """Return ``moment`` as a FHIR instant in UTC, e.g. ``2026-12-02T08:30:00Z``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
