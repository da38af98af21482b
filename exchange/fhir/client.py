"""The one FHIR client of the exchange engine: JSON over hub.outbound.PayerHttpClient.

Every answer is checked before anyone uses it: valid JSON, the expected resourceType,
the expected Bundle type, and every URL it is asked to follow stays on the former
payer's FHIR base (a ``next`` link elsewhere is refused, so a holder cannot point the
hub's bearer token at another server). Failures become ``FhirCallError``s sorted into
transient and permanent (STYLE.md #6).

Waiting: a 429 or 503 is retried here after the server's ``Retry-After`` (other 5xx and
network faults after a short backoff), up to ``max_attempts`` calls and as long as one
wait is at most ``max_retry_wait`` seconds — short waits are cheaper in the worker than
a Celery round trip. A longer ``Retry-After``, or a fault that outlasts the attempts, is
raised as ``FhirTransientError`` carrying ``retry_after`` for the Celery task to retry
with ``countdown`` (STYLE.md #5 and #6).

A 401 makes the client ask its token provider for a fresh token once and repeat the
call (SMART App Launch: an access token may end before its ``expires_in``).

``FhirClient.exchange`` is the one sending path of all this; the Bulk Data client
(bulk_data.py) sends through it too, with its own way of reading answers.
"""

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from exchange.fhir.errors import (
    FhirCallError,
    FhirPermanentError,
    FhirTransientError,
    outbound_failure,
)
from exchange.fhir.json_text import json_parse
from hub.outbound import OutboundError, PayerHttpClient

FHIR_JSON = "application/fhir+json"
# Backoff before retrying a transient fault that came without Retry-After.
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0)

# Called with force_refresh=False for the current token, True after a 401.
TokenProvider = Callable[[bool], str]
# Query parameters; a list repeats the parameter (Bulk Data kick-off: _type, _typeFilter).
QueryParams = Mapping[str, str | Sequence[str]]
T = TypeVar("T")


def retry_after_seconds(value: str | None) -> float | None:
    """Return the wait a ``Retry-After`` header asks for (RFC 9110 §10.2.3: seconds or a date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def issue_text(issue: dict[str, Any]) -> str:
    """Return what one OperationOutcome issue says: its diagnostics, details text or code."""
    details = issue.get("details")
    if not isinstance(details, dict):
        details = {}
    return str(issue.get("diagnostics") or details.get("text") or issue.get("code") or "")


def outcome_text(outcome: dict[str, Any] | None) -> str:
    """Return what an OperationOutcome's issues say, in their own words."""
    if not outcome:
        return ""
    texts = [issue_text(issue) for issue in outcome.get("issue") or [] if isinstance(issue, dict)]
    return "; ".join(text for text in texts if text)


def outcome_codes(outcome: dict[str, Any] | None) -> set[str]:
    """Return the issue type codes of an OperationOutcome (FHIR R4 IssueType)."""
    if not outcome:
        return set()
    return {
        str(issue["code"])
        for issue in outcome.get("issue") or []
        if isinstance(issue, dict) and issue.get("code")
    }


class FhirClient:
    """Call one former payer's FHIR server. The PayerHttpClient is the caller's to close."""

    def __init__(
        self,
        *,
        base_url: str,
        holder_name: str,
        http: PayerHttpClient,
        token_provider: TokenProvider | None = None,
        max_attempts: int = 4,
        max_retry_wait: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.holder_name = holder_name
        self.http = http
        self.token_provider = token_provider
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        # Every wait this client did before a retry, in seconds (shown in progress and tests).
        self.retry_waits: list[float] = []

    def with_token_provider(self, token_provider: TokenProvider | None) -> "FhirClient":
        """Return a client of the same server, over the same HTTP client, that asks
        ``token_provider`` for its tokens and notes its waits in this client's ``retry_waits``
        (retrieval fetches the next page on another thread, exchange/retrieval.py)."""
        client = FhirClient(
            base_url=self.base_url,
            holder_name=self.holder_name,
            http=self.http,
            token_provider=token_provider,
            max_attempts=self.max_attempts,
            max_retry_wait=self.max_retry_wait,
        )
        client.retry_waits = self.retry_waits
        return client

    # -- URLs --------------------------------------------------------------------------------

    def url_for(self, path_or_url: str) -> str:
        """Return the absolute URL of a path under the base, refusing URLs off the base."""
        if "://" not in path_or_url:
            return f"{self.base_url}/{path_or_url.lstrip('/')}"
        url = path_or_url
        if url == self.base_url or url.startswith((f"{self.base_url}/", f"{self.base_url}?")):
            return url
        raise FhirPermanentError(
            f"{self.holder_name}'s server sent a link to {httpx.URL(url).host or url}, outside its "
            f"FHIR base {self.base_url}; the hub does not follow it.",
            code="foreign_link",
        )

    # -- interactions -------------------------------------------------------------------------

    def read(
        self, path: str, *, resource_type: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """GET a resource (or operation result) and check its resourceType."""
        response = self._send("GET", self.url_for(path), params=params)
        return self._resource(response, resource_type=resource_type)

    def read_json(self, path: str) -> dict[str, Any]:
        """GET a plain JSON document under the base (``.well-known/smart-configuration``)."""
        response = self._send("GET", self.url_for(path), accept="application/json")
        return self._json_object(response)

    def bundle_page(
        self, path_or_url: str, *, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """GET one page of a search or ``$everything`` and check it is a searchset Bundle."""
        response = self._send("GET", self.url_for(path_or_url), params=params)
        bundle = self._resource(response, resource_type="Bundle")
        # FHIR R4 §3.1.1.4 (search) and Patient-everything: the answer is a searchset.
        if bundle.get("type") != "searchset":
            raise FhirPermanentError(
                f"{self.holder_name}'s server answered with a Bundle of type "
                f"{bundle.get('type')!r} where a search result (searchset) was expected.",
                code="wrong_bundle_type",
            )
        return bundle

    def operation(self, path: str, *, parameters: dict[str, Any]) -> dict[str, Any]:
        """POST a Parameters resource to an operation and return the Parameters answer."""
        body = json.dumps(parameters, separators=(",", ":")).encode("utf-8")
        response = self._send("POST", self.url_for(path), body=body)
        return self._resource(response, resource_type="Parameters")

    # -- sending, with retries ---------------------------------------------------------------

    def exchange(
        self,
        method: str,
        url: str,
        *,
        consume: Callable[[httpx.Response], T],
        params: QueryParams | None = None,
        body: bytes | None = None,
        accept: str = FHIR_JSON,
        headers: dict[str, str] | None = None,
        attempts: int | None = None,
        authorize: bool = True,
    ) -> T:
        """Send a request and return what ``consume`` makes of an answer below 400.

        ``consume`` gets the response with its body unread (``self.http.iter_limited`` reads
        it) and runs inside the retry loop: if it lets an ``OutboundError`` out (the connection
        dropped mid-body), the request is sent again and ``consume`` called afresh. An answer of
        400 or more becomes a ``FhirCallError``; 401 renews the token once; transient faults
        are retried as the class docstring says, up to ``attempts`` calls (default
        ``max_attempts``; 1 hands every transient fault straight to the caller).
        ``authorize=False`` sends no bearer token.
        """
        max_attempts = attempts or self.max_attempts
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            request_headers = {"Accept": accept, **(headers or {})}
            if authorize and self.token_provider is not None:
                request_headers["Authorization"] = f"Bearer {self.token_provider(False)}"
            if body is not None:
                request_headers["Content-Type"] = FHIR_JSON
            error: FhirCallError
            try:
                with self.http.stream(
                    method, url, params=params, content=body, headers=request_headers
                ) as response:
                    if response.status_code < 400:
                        return consume(response)
                    if (
                        response.status_code == 401
                        and authorize
                        and self.token_provider
                        and not refreshed
                    ):
                        # One renewal per call: a second 401 means the grant itself is gone.
                        self.token_provider(True)
                        refreshed = True
                        attempt -= 1
                        continue
                    error = self._status_error(self.http.read(response))
            except OutboundError as exc:
                error = outbound_failure(exc, holder_name=self.holder_name)
            self.pause_before_retry(error, attempt=attempt, attempts=max_attempts)

    def pause_before_retry(
        self, error: FhirCallError, *, attempt: int, attempts: int | None = None
    ) -> None:
        """Sleep before attempt number ``attempt + 1``, or raise ``error`` if that is not worth it.

        A permanent error, the last of ``attempts`` (default ``max_attempts``) or a wait longer
        than ``max_retry_wait`` is raised, its ``retry_after`` set for the caller's own retry.
        """
        if error.permanent:
            raise error
        wait = error.retry_after if error.retry_after is not None else self._backoff(attempt)
        error.retry_after = wait
        if attempt >= (attempts or self.max_attempts) or wait > self.max_retry_wait:
            raise error
        self.retry_waits.append(wait)
        time.sleep(wait)

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        accept: str = FHIR_JSON,
    ) -> httpx.Response:
        return self.exchange(
            method, url, consume=self.http.read, params=params, body=body, accept=accept
        )

    @staticmethod
    def _backoff(attempt: int) -> float:
        return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1]

    def _status_error(self, response: httpx.Response) -> FhirCallError:
        status = response.status_code
        outcome = self._outcome_of(response)
        said = outcome_text(outcome)
        because = f": {said}" if said else ""
        name = self.holder_name
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        common: dict[str, Any] = {"status": status, "outcome": outcome}
        if status == 429:
            return FhirTransientError(
                f"{name}'s server asked the hub to slow down (HTTP 429){because}.",
                code="throttled",
                retry_after=retry_after,
                **common,
            )
        if status >= 500:
            return FhirTransientError(
                f"{name}'s server is unavailable at the moment (HTTP {status}){because}.",
                code="unavailable" if status == 503 else "server_error",
                retry_after=retry_after,
                **common,
            )
        if status == 401:
            return FhirPermanentError(
                f"{name} no longer accepts the hub's authorization, even after renewing it{because}.",
                code="unauthorized",
                **common,
            )
        if status == 403:
            return FhirPermanentError(
                f"{name} refused access{because}.", code="forbidden", **common
            )
        if status == 404:
            return FhirPermanentError(
                f"{name}'s server has nothing at {response.request.url.path}{because}.",
                code="not_found",
                **common,
            )
        return FhirPermanentError(
            f"{name}'s server refused the request (HTTP {status}){because}.",
            code="rejected",
            **common,
        )

    # -- reading answers ---------------------------------------------------------------------

    @staticmethod
    def _outcome_of(response: httpx.Response) -> dict[str, Any] | None:
        try:
            body = json_parse(response.content)
        except ValueError:
            return None
        if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
            return body
        return None

    def _json_object(self, response: httpx.Response) -> dict[str, Any]:
        # A web page where FHIR was expected (a portal, a login page, a wrong base URL):
        # named as such, since "malformed JSON" would send people looking in the wrong place.
        content_type = response.headers.get("content-type", "").lower()
        if "html" in content_type or response.content.lstrip()[:1] == b"<":
            raise FhirPermanentError(
                f"{self.holder_name}'s server answered {response.request.url.path} with an HTML "
                "page, not FHIR JSON.",
                code="html_page",
            )
        try:
            body = json_parse(response.content)
        except UnicodeDecodeError:
            raise FhirPermanentError(
                f"{self.holder_name}'s server sent data that is not UTF-8 text, so not FHIR JSON.",
                code="malformed_json",
            ) from None
        except json.JSONDecodeError as exc:
            raise FhirPermanentError(
                f"{self.holder_name}'s server sent malformed JSON ({exc.msg} at line {exc.lineno}, "
                f"column {exc.colno}) from {response.request.url.path}.",
                code="malformed_json",
            ) from None
        if not isinstance(body, dict):
            raise FhirPermanentError(
                f"{self.holder_name}'s server sent a JSON {type(body).__name__} where a FHIR "
                "resource (a JSON object) was expected.",
                code="wrong_resource_type",
            )
        return body

    def _resource(self, response: httpx.Response, *, resource_type: str) -> dict[str, Any]:
        body = self._json_object(response)
        found = body.get("resourceType")
        if found != resource_type:
            raise FhirPermanentError(
                f"{self.holder_name}'s server sent {_a(found)} where {_a(resource_type)} "
                "was expected.",
                code="wrong_resource_type",
            )
        return body


def _a(resource_type: object) -> str:
    if not resource_type:
        return "a JSON object without a resourceType"
    return f"a {resource_type}"
