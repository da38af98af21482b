"""Follow an asynchronous request at a former payer: kick-off, status, files, delete (Bulk Data STU2).

Every call goes through the one FHIR client (``FhirClient.exchange``): the same bearer token
and 401 renewal, the same sorting of failures into transient and permanent (STYLE.md #6),
the same outbound checks. What Bulk Data adds:

- Nothing here waits for a job. ``kick_off`` and ``poll`` send one request each (a 401
  renewal aside) and hand any transient fault to the caller with its ``retry_after``; the
  caller schedules the next poll after ``BulkPending.retry_after``, however long
  (STYLE.md #5: polls are scheduled tasks, never sleeps).
- The status URL must stay on the FHIR base's origin, since the hub sends its token there.
- Files stream into a seekable target, never whole into memory. A connection lost mid-file
  is resumed with ``Range: bytes=<received>-`` (206), or started again from zero when the
  server ignores the Range and answers 200 (RFC 9110 §14.2 lets it). The client positions
  and truncates the target itself, so no byte is ever written twice, and when ``download``
  raises the target holds an exact prefix of the file to resume from.
- The bearer token goes with a file request only when the manifest says
  ``requiresAccessToken`` and the file is on the FHIR base's origin or on an origin the caller
  trusts. §Response - Complete Status lets files live on "file servers other than a
  FHIR-specific server", and §Bulk Data Output File Request says a file that requires the
  token SHALL get it; but a manifest naming another host would otherwise carry the hub's
  token (which opens every member's records at the holder) to whoever runs that host. Such a
  file is refused (``foreign_link``) unless its origin is in ``trusted_file_origins``. A file
  with ``requiresAccessToken`` false (a signed URL) is fetched anywhere, without the token.
"""

import json
import logging
import re
import tempfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import httpx

from exchange.fhir.client import (
    FhirClient,
    QueryParams,
    issue_text,
    outcome_codes,
    outcome_text,
    retry_after_seconds,
)
from exchange.fhir.errors import (
    FhirCallError,
    FhirPermanentError,
    FhirTransientError,
    outbound_failure,
)
from hub.outbound import TransportFailure

logger = logging.getLogger(__name__)

NDJSON = "application/fhir+ndjson"
# How many issue texts of an error file are kept; all of them are counted.
ERROR_TEXTS_KEPT = 50
# An error file is spooled to disk beyond this size while it is read.
ERROR_FILE_SPOOL_BYTES = 1024 * 1024
# FHIR R4 IssueType: "transient" and the codes under it, but not "exception", which servers
# (the sandbox among them) also use for a job that crashed for good.
TRANSIENT_ISSUE_CODES = frozenset(
    {"transient", "lock-error", "no-store", "timeout", "incomplete", "throttled"}
)
# FHIR R4 §2.24.0.1 instant: a full date and time with seconds and a zone.
_INSTANT = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?"
    r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
_READ_BLOCK = 1024 * 1024

Origin = tuple[str, str, int]


@dataclass(frozen=True)
class BulkOutputFile:
    """One file of a completion manifest: the resource type of its lines, where, how many."""

    type: str
    url: str
    count: int | None


@dataclass(frozen=True)
class BulkManifest:
    """A validated completion manifest (Bulk Data STU2 §Response - Complete Status)."""

    transaction_time: datetime
    request: str
    requires_access_token: bool
    output: tuple[BulkOutputFile, ...]
    error: tuple[BulkOutputFile, ...]
    deleted: tuple[BulkOutputFile, ...]
    raw: dict[str, Any]


@dataclass(frozen=True)
class BulkPending:
    """The job still runs: poll again after ``retry_after`` seconds (None: the server did not say)."""

    retry_after: float | None
    progress: str


@dataclass(frozen=True)
class BulkDone:
    """The job is complete: ``body`` is the 200 answer, ``manifest`` its reading.

    A PDex STU 2.1 ``$bulk-member-match`` completes with a Parameters resource instead of a
    manifest; then ``manifest`` is None and ``body`` is that Parameters.
    """

    manifest: BulkManifest | None
    body: dict[str, Any]


@dataclass(frozen=True)
class DownloadResult:
    """What ``download`` wrote: the file's size and NDJSON lines, how often it resumed or restarted."""

    bytes: int
    lines: int
    resumes: int = 0
    restarts: int = 0


@dataclass(frozen=True)
class HolderErrors:
    """What an ``error`` file says: the first issue texts, and how many issues and bad lines it holds."""

    texts: tuple[str, ...]
    issues: int
    unreadable_lines: int


def _origin(url: httpx.URL) -> Origin:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _parse_instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # e.g. 30 February, or a leap second
        return None


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _headers_only(response: httpx.Response) -> httpx.Response:
    # §Response - Success of a kick-off or delete: the body is an optional OperationOutcome and
    # only the status and headers matter, so a body lost on the way costs nothing.
    return response


class _Receiver:
    """Write one file's bytes at the right place of the target, counting lines as they pass."""

    def __init__(
        self,
        target: IO[bytes],
        *,
        start_at: int,
        holder_name: str,
        read: Callable[[httpx.Response], Iterator[bytes]],
    ) -> None:
        self.target = target
        self.holder_name = holder_name
        self.read = read
        self.size = 0
        self.newlines = 0
        self.last_byte = b""
        self.resumes = 0
        self.restarts = 0
        # Set when the answer ended early; the file is then resumed from ``size``.
        self.dropped: FhirCallError | None = None
        target.seek(0)
        while self.size < start_at:
            block = target.read(min(_READ_BLOCK, start_at - self.size))
            if not block:
                raise ValueError(f"start_at is {start_at} but the target holds {self.size} bytes")
            self._count(block)
        target.seek(start_at)
        target.truncate()

    def _count(self, data: bytes) -> None:
        self.size += len(data)
        self.newlines += data.count(b"\n")
        if data:
            self.last_byte = data[-1:]

    def restart(self) -> None:
        """Empty the target: what follows is the file from its first byte."""
        self.target.seek(0)
        self.target.truncate()
        self.size = self.newlines = 0
        self.last_byte = b""
        self.restarts += 1

    def take(self, response: httpx.Response) -> None:
        """Write the answer's body where it belongs, noting in ``dropped`` if it ended early."""
        self.dropped = None
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != self.size:
                # Not the range asked for: ask for the whole file instead.
                self.restart()
                self.dropped = FhirTransientError(
                    f"{self.holder_name}'s server sent another part of the file than asked for.",
                    code="network",
                )
                return
            if self.size:
                self.resumes += 1
        elif self.size:
            # The Range was ignored (RFC 9110 §14.2 allows it): this is the whole file again.
            self.restart()
        try:
            for chunk in self.read(response):
                self.target.write(chunk)
                self._count(chunk)
        except TransportFailure as exc:
            self.dropped = outbound_failure(exc, holder_name=self.holder_name)

    def result(self) -> DownloadResult:
        """Return the size and the lines of the file (a last line without newline counts)."""
        partial_line = 1 if self.size and self.last_byte != b"\n" else 0
        return DownloadResult(
            bytes=self.size,
            lines=self.newlines + partial_line,
            resumes=self.resumes,
            restarts=self.restarts,
        )


class BulkDataClient:
    """Kick off, follow, download and delete Bulk Data requests at one former payer.

    ``trusted_file_origins`` (``"https://files.holder.example"``) are origins other than
    the FHIR base's that may receive the bearer token for files that require it.
    """

    def __init__(self, fhir: FhirClient, *, trusted_file_origins: Collection[str] = ()) -> None:
        self.fhir = fhir
        self.origin = _origin(httpx.URL(fhir.base_url))
        self.file_token_origins = {self.origin} | {
            _origin(httpx.URL(origin)) for origin in trusted_file_origins
        }

    @property
    def holder_name(self) -> str:
        return self.fhir.holder_name

    # -- kick-off -------------------------------------------------------------------------------

    def kick_off(
        self,
        path: str,
        *,
        parameters: dict[str, Any] | None = None,
        query: QueryParams | None = None,
    ) -> str:
        """Start an asynchronous request at ``path`` under the base; return its status URL.

        With ``parameters`` (a FHIR Parameters resource) the kick-off is a POST, else a GET;
        ``query`` goes in the query string either way (a list repeats the parameter).
        """
        body = None
        if parameters is not None:
            body = json.dumps(parameters, separators=(",", ":")).encode("utf-8")
        response = self.fhir.exchange(
            "GET" if body is None else "POST",
            self.fhir.url_for(path),
            consume=_headers_only,
            params=query,
            body=body,
            # §Bulk Data Kick-off Request, Headers: Accept application/fhir+json (the format
            # of an OperationOutcome) and Prefer respond-async.
            headers={"Prefer": "respond-async"},
            # A kick-off is not idempotent: sent again after a lost answer it could start a
            # second job. Any transient fault, a 429 included (§Response - Error: the server
            # is still busy with an earlier export), goes to the caller with its retry_after.
            attempts=1,
        )
        name = self.holder_name
        status = response.status_code
        if status == 202:
            location = response.headers.get("Content-Location")
            if not location:
                raise FhirPermanentError(
                    f"{name}'s server accepted the bulk request {path} but did not say where to "
                    "follow it (no Content-Location header).",
                    code="no_status_url",
                    status=status,
                )
            # §Response - Success asks for an absolute URL; a relative one is read against
            # the kick-off's own URL (RFC 9110 §8.7).
            return self._on_origin(str(response.url.join(location)))
        if status == 200:
            raise FhirPermanentError(
                f"{name}'s server answered the bulk request {path} at once (HTTP 200) instead "
                "of accepting it to run asynchronously (202 with a status URL), so it does "
                "not follow Bulk Data here.",
                code="not_asynchronous",
                status=status,
            )
        raise FhirPermanentError(
            f"{name}'s server answered the bulk request {path} with HTTP {status} where 202 "
            "Accepted was expected.",
            code="unexpected_status",
            status=status,
        )

    # -- status -------------------------------------------------------------------------------

    def poll(self, status_url: str) -> BulkPending | BulkDone:
        """Ask once how the job at ``status_url`` stands; never wait.

        202 is ``BulkPending`` with the server's ``Retry-After`` (seconds or an HTTP date, as
        long as it says) and ``X-Progress``; 200 is ``BulkDone`` with the manifest checked.
        """
        url = self._on_origin(status_url)
        try:
            response = self.fhir.exchange(
                "GET",
                url,
                consume=self._read_if_complete,
                # §Bulk Data Status Request: the client SHOULD accept application/json.
                accept="application/json",
                attempts=1,
            )
        except FhirCallError as error:
            raise self._status_failure(error) from None
        if response.status_code == 202:
            # §Response - In-Progress Status.
            return BulkPending(
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                progress=response.headers.get("X-Progress", "").strip(),
            )
        if response.status_code == 200:
            return self._completion(response.content)
        raise FhirPermanentError(
            f"{self.holder_name}'s server answered the status of a bulk request with HTTP "
            f"{response.status_code}, neither 202 (running) nor 200 (complete).",
            code="unexpected_status",
            status=response.status_code,
        )

    def _read_if_complete(self, response: httpx.Response) -> httpx.Response:
        return self.fhir.http.read(response) if response.status_code == 200 else response

    def _status_failure(self, error: FhirCallError) -> FhirCallError:
        """Return what a failed status request means for the job (§Response - Error Status)."""
        name = self.holder_name
        said = outcome_text(error.outcome)
        because = f": {said}" if said else ""
        common: dict[str, Any] = {"status": error.status, "outcome": error.outcome}
        if error.status in (404, 410):
            # §Bulk Data Delete Request: 404 after a delete; the sandbox, like many servers,
            # says 410 once the files expired.
            return FhirPermanentError(
                f"{name}'s server no longer knows this bulk request (HTTP {error.status})"
                f"{because}; it was cancelled or its files expired. Kick it off again.",
                code="bulk_job_gone",
                **common,
            )
        if error.status is None or error.status in (401, 403, 429, 503):
            return error
        if outcome_codes(error.outcome) & TRANSIENT_ISSUE_CODES:
            # §Response - Error Status: "a polling failure that does not indicate failure of
            # the export job" carries a transient code: poll again later.
            if error.permanent:
                return FhirTransientError(
                    error.message, code="unavailable", retry_after=error.retry_after, **common
                )
            return error
        if error.outcome is not None:
            # §Response - Error Status: otherwise a 4xx/5xx with an OperationOutcome is the
            # job's own failure, and asking again will not change it.
            return FhirPermanentError(
                f"{name}'s server reports that the bulk request failed (HTTP {error.status})"
                f"{because}.",
                code="bulk_job_failed",
                **common,
            )
        return error

    # -- the completion manifest ---------------------------------------------------------------

    def _completion(self, content: bytes) -> BulkDone:
        try:
            body = json.loads(content)
        except ValueError:
            raise self._malformed("it is not JSON") from None
        if not isinstance(body, dict):
            raise self._malformed(f"it is a JSON {type(body).__name__}, not an object")
        resource_type = body.get("resourceType")
        if resource_type == "Parameters":
            # PDex STU 2.1 $bulk-member-match completes with the result itself, not a manifest.
            return BulkDone(manifest=None, body=body)
        if resource_type is not None:
            raise FhirPermanentError(
                f"{self.holder_name}'s server completed the bulk request with "
                f"{_shown(resource_type)} where a completion manifest (or a Parameters "
                "resource) was expected.",
                code="wrong_resource_type",
            )
        return BulkDone(manifest=self.manifest(body), body=body)

    def manifest(self, body: dict[str, Any]) -> BulkManifest:
        """Return body read as a completion manifest (§Response - Complete Status), or raise
        (also for a manifest kept from an earlier poll)."""
        if "transactionTime" not in body:
            raise self._malformed("transactionTime is missing")
        transaction_time = _parse_instant(body["transactionTime"])
        if transaction_time is None:
            raise self._malformed(
                f"transactionTime is {_shown(body['transactionTime'])}, not a FHIR instant "
                "such as 2021-01-01T00:00:00Z"
            )
        # "request" is required but "may be removed in a future version": absent reads as "".
        request = body.get("request", "")
        if not isinstance(request, str):
            raise self._malformed(f"request is {_shown(request)}, not a URL")
        if "requiresAccessToken" not in body:
            raise self._malformed("requiresAccessToken is missing")
        requires_access_token = body["requiresAccessToken"]
        if not isinstance(requires_access_token, bool):
            raise self._malformed(
                f"requiresAccessToken is {_shown(requires_access_token)}, not true or false"
            )
        if "output" not in body:
            raise self._malformed("output is missing")
        return BulkManifest(
            transaction_time=transaction_time,
            request=request,
            requires_access_token=requires_access_token,
            output=self._files(body, "output"),
            # "error" is required, "deleted" optional; a manifest without "error" still lists
            # every output file, so it is read as empty rather than thrown away.
            error=self._files(body, "error"),
            deleted=self._files(body, "deleted"),
            raw=body,
        )

    def _files(self, body: dict[str, Any], field: str) -> tuple[BulkOutputFile, ...]:
        entries = body.get(field, [])
        if not isinstance(entries, list):
            raise self._malformed(f"{field} is {_shown(entries)}, not a list")
        files = []
        for index, entry in enumerate(entries):
            where = f"{field}[{index}]"
            if not isinstance(entry, dict):
                raise self._malformed(f"{where} is {_shown(entry)}, not an object")
            kind, url, count = entry.get("type"), entry.get("url"), entry.get("count")
            if not isinstance(kind, str) or not kind:
                raise self._malformed(f"{where}.type is {_shown(kind)}, not a resource type")
            if not isinstance(url, str) or httpx.URL(url).scheme not in ("http", "https"):
                raise self._malformed(f"{where}.url is {_shown(url)}, not an absolute URL")
            if count is not None and (
                not isinstance(count, int) or isinstance(count, bool) or count < 0
            ):
                raise self._malformed(
                    f"{where}.count is {_shown(count)}, not a number of resources (0 or more)"
                )
            files.append(BulkOutputFile(type=kind, url=url, count=count))
        return tuple(files)

    def _malformed(self, detail: str) -> FhirPermanentError:
        name = self.holder_name
        return FhirPermanentError(
            f"{name}'s server sent a bulk completion manifest the hub cannot use: {detail} "
            f"(Bulk Data STU2, Response - Complete Status). Ask {name} to correct its server, "
            "then kick the request off again.",
            code="malformed_manifest",
        )

    # -- files --------------------------------------------------------------------------------

    def download(
        self, url: str, *, requires_access_token: bool, into: IO[bytes], start_at: int = 0
    ) -> DownloadResult:
        """Stream the file at ``url`` into ``into``; return its size and NDJSON line count.

        ``into`` is binary, readable, writable and seekable (``open(path, "w+b")``,
        ``io.BytesIO``); the client seeks and truncates it itself. ``start_at`` resumes an
        earlier download whose first ``start_at`` bytes ``into`` holds. When this raises,
        ``into`` holds an exact prefix of the file: resume with ``start_at`` = its size.
        Compare ``lines`` with the manifest's ``count``.
        """
        authorize = self._file_authorization(url, requires_access_token)
        receiver = _Receiver(
            into, start_at=start_at, holder_name=self.holder_name, read=self.fhir.http.iter_limited
        )
        stalls = 0
        while True:
            before = receiver.size
            try:
                self.fhir.exchange(
                    "GET",
                    url,
                    consume=receiver.take,
                    # §Bulk Data Output File Request, Headers.
                    accept=NDJSON,
                    headers={"Range": f"bytes={before}-"} if before else None,
                    authorize=authorize,
                )
            except FhirCallError as error:
                if error.status == 416 and before:
                    # The server cannot serve the rest from there: take the whole file again.
                    receiver.restart()
                    continue
                raise self._file_failure(error, url) from None
            if receiver.dropped is None:
                return receiver.result()
            if receiver.size > before:
                stalls = 0  # the connection dropped but bytes came: resume at once
                continue
            stalls += 1
            self.fhir.pause_before_retry(receiver.dropped, attempt=stalls)

    def _file_authorization(self, url: str, requires_access_token: bool) -> bool:
        if not requires_access_token:
            return False
        target = httpx.URL(url)
        if _origin(target) in self.file_token_origins:
            return True
        raise FhirPermanentError(
            f"{self.holder_name}'s bulk manifest lists a file at {target.host}, outside its FHIR "
            f"server {self.fhir.base_url}, and says it needs the hub's access token; the hub "
            "sends its token only to the FHIR server's own address.",
            code="foreign_link",
        )

    def _file_failure(self, error: FhirCallError, url: str) -> FhirCallError:
        if error.status in (404, 410):
            # §Response - Complete Status: files may expire (Expires); the data is still
            # there, so a new kick-off brings it back.
            name = httpx.URL(url).path.rsplit("/", 1)[-1]
            return FhirPermanentError(
                f"{self.holder_name}'s server no longer has the bulk file {name} "
                f"(HTTP {error.status}); its files expire after a while. Kick the request off "
                "again.",
                code="bulk_file_expired",
                status=error.status,
                outcome=error.outcome,
            )
        return error

    def read_error_file(
        self, url: str, *, requires_access_token: bool, keep: int = ERROR_TEXTS_KEPT
    ) -> HolderErrors:
        """Return what an ``error`` file of a manifest says: the first ``keep`` issue texts.

        Each line is an OperationOutcome (§Response - Complete Status, ``error``); every issue
        is counted, and a line that is not one is counted as unreadable.
        """
        texts: list[str] = []
        issues = unreadable = 0
        with tempfile.SpooledTemporaryFile(max_size=ERROR_FILE_SPOOL_BYTES) as spool:
            self.download(url, requires_access_token=requires_access_token, into=spool)
            spool.seek(0)
            for line in spool:
                if not line.strip():
                    continue
                try:
                    outcome = json.loads(line)
                except ValueError:
                    outcome = None
                if not isinstance(outcome, dict) or outcome.get("resourceType") != (
                    "OperationOutcome"
                ):
                    unreadable += 1
                    continue
                for issue in outcome.get("issue") or []:
                    if not isinstance(issue, dict):
                        continue
                    issues += 1
                    if len(texts) < keep:
                        texts.append(issue_text(issue))
        return HolderErrors(texts=tuple(texts), issues=issues, unreadable_lines=unreadable)

    # -- delete -------------------------------------------------------------------------------

    def delete(self, status_url: str) -> bool:
        """Ask the server to cancel the job or drop its files; return whether it is gone.

        §Bulk Data Delete Request: 202 (any answer below 400 is taken), and 404 or 410 means
        gone already. Any other failure is logged and answered False, not raised: the
        delete only tidies up (files expire on their own, §Response - Complete Status), so it
        must not fail a member's request; the caller may try again later.
        """
        url = self._on_origin(status_url)
        try:
            self.fhir.exchange("DELETE", url, consume=_headers_only)
        except FhirCallError as error:
            if error.status in (404, 410):
                return True
            logger.warning(
                "bulk request not deleted at %s (%s): %s", url, error.code, error.message
            )
            return False
        return True

    # -- URLs ---------------------------------------------------------------------------------

    def _on_origin(self, url: str) -> str:
        """Return url if it is on the FHIR base's origin; the hub sends its token there."""
        if _origin(httpx.URL(url)) == self.origin:
            return url
        raise FhirPermanentError(
            f"{self.holder_name}'s server gave {httpx.URL(url).host or url} as the place to "
            f"follow a bulk request, outside its FHIR server {self.fhir.base_url}; the hub "
            "does not send its authorization there.",
            code="foreign_link",
        )
