"""Sample resources from the sandbox payer's generator and staging pages as retrieval writes them."""

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

from exchange.payloads.layout import RequestFiles
from exchange.payloads.storage import PayloadStorage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# The day the samples were generated "as of": a request made that day sees them as recent.
SAMPLES_AS_OF = date(2026, 11, 23)

Resource = dict[str, Any]


def sample(name: str) -> Resource:
    """Return a fresh copy of the named sample (see sandbox_record_samples.json's keys)."""
    return copy.deepcopy(_samples()[name])


def sample_names(prefix: str = "") -> list[str]:
    return sorted(name for name in _samples() if name.startswith(prefix))


_cache: dict[str, Resource] = {}


def _samples() -> dict[str, Resource]:
    if not _cache:
        document = json.loads((FIXTURES / "sandbox_record_samples.json").read_text())
        _cache.update(document["resources"])
    return _cache


def stage_pages(
    storage: PayloadStorage, request_id: int, lines: list[Resource | str], *, page_size: int = 50
) -> list[str]:
    """Write ``lines`` (resources, or raw text for malformed lines) as retrieval's staging pages."""
    names = []
    for start in range(0, max(len(lines), 1), page_size):
        name = RequestFiles(request_id).staging_page(start // page_size + 1)
        body = b"".join(
            (line if isinstance(line, str) else json.dumps(line)).encode() + b"\n"
            for line in lines[start : start + page_size]
        )
        storage.write_bytes(name, body)
        names.append(name)
    return names


def screened_resources(storage: PayloadStorage, name: str) -> list[Resource]:
    return [json.loads(line) for line in storage.read_bytes(name).splitlines() if line.strip()]
