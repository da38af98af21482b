"""What one screening run kept, reduced, removed and quarantined — and where it wrote them.

The result is stored beside the screened files (``summary.json``) so the packaging step, a
retried task or a status page reads the same figures the run produced.
"""

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from exchange.payloads.layout import RequestFiles
from exchange.payloads.storage import PayloadStorage
from exchange.screening.reasons import QUARANTINE_CODE, QUARANTINE_SENTENCE, RemovalReason


def screened_name(request_id: int, resource_type: str) -> str:
    """Return where the kept resources of one type are written (NDJSON)."""
    return f"{RequestFiles(request_id).screened}/{resource_type}.ndjson"


def quarantine_name(request_id: int) -> str:
    return f"{RequestFiles(request_id).screened}/quarantine.ndjson"


def summary_name(request_id: int) -> str:
    return f"{RequestFiles(request_id).screened}/summary.json"


def resource_type_order(resource_types: list[str]) -> list[str]:
    """Return the types in delivery order: the Patient first, then alphabetically."""
    return sorted(resource_types, key=lambda name: (name != "Patient", name))


@dataclass(frozen=True)
class QuarantinedResource:
    """Where an invalid resource was staged and what is wrong with it (first problems)."""

    page: str
    line: int
    resource_type: str | None
    resource_id: str | None
    problems: list[str]


@dataclass
class ScreeningResult:
    request_id: int
    request_date: date
    policy: str
    kept: dict[str, int] = field(default_factory=dict)
    reduced: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    # The first few invalid resources, for people; all of them are in quarantine.ndjson.
    quarantine_examples: list[QuarantinedResource] = field(default_factory=list)
    # The staged pages screened (file names, in order): what the figures are of.
    pages: list[str] = field(default_factory=list)

    @property
    def kept_total(self) -> int:
        return sum(self.kept.values())

    @property
    def files(self) -> list[str]:
        """Return the screened files to package, in delivery order."""
        return [
            screened_name(self.request_id, resource_type)
            for resource_type in resource_type_order(list(self.kept))
        ]

    def screened_out(self) -> list[dict[str, Any]]:
        """Return what was screened out, per reason: code, count and sentence (stable order)."""
        rows = [
            {"code": reason.value, "count": self.removed[reason.value], "reason": reason.sentence}
            for reason in RemovalReason
            if self.removed.get(reason.value)
        ]
        if self.quarantined:
            rows.append(
                {"code": QUARANTINE_CODE, "count": self.quarantined, "reason": QUARANTINE_SENTENCE}
            )
        return rows

    def to_json(self) -> bytes:
        data = asdict(self)
        data["request_date"] = self.request_date.isoformat()
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "ScreeningResult":
        data = json.loads(raw)
        data["request_date"] = date.fromisoformat(data["request_date"])
        data["quarantine_examples"] = [
            QuarantinedResource(**example) for example in data["quarantine_examples"]
        ]
        return cls(**data)


def screening_result_read(*, request_id: int, storage: PayloadStorage) -> ScreeningResult:
    """Return the result of the last screening run of the request; fail if it never ran."""
    name = summary_name(request_id)
    if not storage.exists(name):
        raise FileNotFoundError(f"request {request_id} has not been screened ({name} is missing)")
    return ScreeningResult.from_json(storage.read_bytes(name))
