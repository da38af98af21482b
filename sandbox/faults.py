"""Parse the `--faults` grammar and inject the faults into FHIR responses.

Grammar (comma-separated items, each optional, any order)::

    latency=200ms        add this delay to every FHIR data request (ms or s)
    429=0.2              answer this fraction of FHIR data requests 429 with Retry-After
    500=0.1              ... this fraction 500 Internal Server Error
    503=0.1              ... this fraction 503 Service Unavailable (with Retry-After)
    drop=0.05            send headers and half the body (a bulk file's too) of this fraction,
                         then drop the connection
    retry-after=2s       the Retry-After of injected 429/503 answers (default 1s)
    token-ttl=5s         access tokens expire after this long (default 300s backend, 3600s member)
    idp-down             every OpenID Connect and sign-in endpoint answers 503
    bad-ndjson=0.5       this fraction of bulk output files carries one malformed NDJSON line
    export-ttl=2s        bulk output files expire this fast (default --export-ttl, 3600s)
    registration-refused the RFC 7591 endpoint (still advertised) refuses every request, as
                         servers that register clients only their own way do (the SMART
                         reference bulk-data-server); clients come from B/sandbox/clients

"FHIR data requests" are all requests under /fhir except /fhir/metadata and
/fhir/.well-known/*, so clients can always discover the server.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")
_RATES = {
    "429": "rate_429",
    "500": "rate_500",
    "503": "rate_503",
    "drop": "rate_drop",
    "bad-ndjson": "rate_bad_ndjson",
}
_DURATIONS = {
    "latency": "latency_s",
    "retry-after": "retry_after_s",
    "token-ttl": "token_ttl_s",
    "export-ttl": "export_ttl_s",
}


@dataclass(frozen=True)
class FaultPlan:
    """Which faults a sandbox injects; all off by default."""

    latency_s: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    retry_after_s: float = 1.0
    token_ttl_s: float | None = None
    idp_down: bool = False
    registration_refused: bool = False
    rate_bad_ndjson: float = 0.0
    export_ttl_s: float | None = None

    @property
    def touches_responses(self) -> bool:
        """Return whether any fault alters FHIR data responses."""
        return bool(
            self.latency_s or self.rate_429 or self.rate_500 or self.rate_503 or self.rate_drop
        )


def _parse_duration(key: str, text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"fault {key}: {text!r} is not a duration like 200ms or 2s")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "ms" else number


def _parse_rate(key: str, text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"fault {key}: {text!r} is not a number between 0 and 1") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault {key}: {rate} is not between 0 and 1")
    return rate


def parse_faults(spec: str) -> FaultPlan:
    """Return the FaultPlan written in spec, or raise ValueError naming the bad item."""
    values: dict[str, float | bool] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        if key == "idp-down" and not value:
            values["idp_down"] = True
        elif key == "registration-refused" and not value:
            values["registration_refused"] = True
        elif key in _RATES and value:
            values[_RATES[key]] = _parse_rate(key, value)
        elif key in _DURATIONS and value:
            values[_DURATIONS[key]] = _parse_duration(key, value)
        else:
            raise ValueError(f"unknown fault {item!r}")
    total = sum(float(values.get(name, 0.0)) for name in ("rate_429", "rate_500", "rate_503"))
    if total > 1.0:
        raise ValueError("fault rates 429+500+503 add up to more than 1")
    return FaultPlan(**values)  # type: ignore[arg-type]


class DroppedConnection(Exception):
    """Raised mid-body so the WSGI server abandons the connection."""


@dataclass(frozen=True)
class FaultDecision:
    """What to do to one request."""

    status: int | None = None
    drop: bool = False


class FaultDice:
    """Roll the faults of a plan, reproducibly for a seed, safely across threads."""

    def __init__(self, plan: FaultPlan, seed: str) -> None:
        self._plan = plan
        self._random = random.Random(f"faults:{seed}")  # noqa: S311 - not for security
        self._lock = threading.Lock()

    def roll(self) -> FaultDecision:
        """Return the fault (if any) for the next FHIR data request."""
        plan = self._plan
        with self._lock:
            status_roll = self._random.random()
            drop_roll = self._random.random()
        status: int | None = None
        if status_roll < plan.rate_429:
            status = 429
        elif status_roll < plan.rate_429 + plan.rate_500:
            status = 500
        elif status_roll < plan.rate_429 + plan.rate_500 + plan.rate_503:
            status = 503
        return FaultDecision(status=status, drop=drop_roll < plan.rate_drop)

    def corrupts_next_file(self) -> bool:
        """Return whether the next bulk output file gets one malformed NDJSON line."""
        if not self._plan.rate_bad_ndjson:
            return False
        with self._lock:
            return self._random.random() < self._plan.rate_bad_ndjson


def cut_off(chunks: Iterable[bytes], *, keep: int) -> Iterator[bytes]:
    """Yield the first keep bytes of chunks, then drop the connection."""
    for chunk in chunks:
        if len(chunk) >= keep:
            yield chunk[:keep]
            break
        keep -= len(chunk)
        yield chunk
    raise DroppedConnection


def sleep_for(plan: FaultPlan, sleep: Callable[[float], None] = time.sleep) -> None:
    """Apply the plan's added latency."""
    if plan.latency_s:
        sleep(plan.latency_s)
