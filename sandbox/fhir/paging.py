"""Build searchset Bundles a page at a time, with a stable `_offset` cursor in `next` links."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sandbox.fhir.outcomes import FhirError

Resource = dict[str, Any]
MAX_COUNT = 1000


def int_parameter(params: dict[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """Return integer parameter name within [low, high], or raise 400."""
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FhirError(400, "invalid", f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise FhirError(400, "invalid", f"{name} must be between {low} and {high}")
    return value


def page_bundle(
    resources: list[Resource],
    *,
    base: str,
    path: str,
    params: dict[str, str],
    default_count: int,
) -> Resource:
    """Return the searchset Bundle page of resources selected by _offset and _count."""
    count = int_parameter(params, "_count", default=default_count, low=1, high=MAX_COUNT)
    offset = int_parameter(params, "_offset", default=0, low=0, high=10**9)
    page = resources[offset : offset + count]

    def link(at: int) -> str:
        query = dict(params) | {"_count": str(count), "_offset": str(at)}
        return f"{base}/{path}?{urlencode(query)}"

    links = [{"relation": "self", "url": link(offset)}]
    if offset + count < len(resources):
        links.append({"relation": "next", "url": link(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": link(max(offset - count, 0))})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in page
        ],
    }
