"""The Bulk Data client: against running sandbox payers (clean and faulty) and a scripted server."""

import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest

from exchange.fhir.bulk_data import (
    BulkDataClient,
    BulkDone,
    BulkManifest,
    BulkPending,
    DownloadResult,
)
from exchange.fhir.client import FhirClient, TokenProvider
from exchange.fhir.errors import FhirPermanentError, FhirTransientError
from hub.outbound import PayerHttpClient
from tests.sandbox.harness import (
    BULK_SCOPES,
    FORMER,
    PAYER_TO_PAYER,
    SEED,
    BackendClient,
    RunningSandbox,
    bulk_match_body,
    current_consent,
    member_bundle,
    running_sandbox,
)

NPI = "1555555558"
STU_2_1 = {"_outputFormat": "application/fhir+json"}
T = TypeVar("T")


# -- against sandbox payers --------------------------------------------------------------------


def tokens_of(client: BackendClient) -> TokenProvider:
    """Return a token provider that keeps its token until asked to renew it."""
    kept: list[str] = []

    def provide(force_refresh: bool) -> str:
        if force_refresh or not kept:
            kept[:] = [client.token(BULK_SCOPES)]
        return kept[0]

    return provide


def bulk_client(
    sandbox: RunningSandbox, http: PayerHttpClient
) -> tuple[BulkDataClient, BackendClient]:
    """Register a payer at the sandbox; return its Bulk Data client and its registration."""
    backend = BackendClient(sandbox, NPI).register()
    fhir = FhirClient(
        base_url=sandbox.fhir, holder_name=FORMER, http=http, token_provider=tokens_of(backend)
    )
    return BulkDataClient(fhir), backend


def patiently(call: Callable[[], T], *, tries: int = 10) -> T:
    """Call until it stops failing transiently, sleeping what each failure asks (the caller's loop)."""
    for _ in range(tries - 1):
        try:
            return call()
        except FhirTransientError as error:
            time.sleep(error.retry_after or 1)
    return call()


def completed(
    bulk: BulkDataClient, status_url: str, *, pause: float | None = None, timeout: float = 30
) -> BulkDone:
    """Poll until done, sleeping per Retry-After between polls (the client never sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = patiently(lambda: bulk.poll(status_url))
        if isinstance(answer, BulkDone):
            return answer
        assert answer.progress
        assert time.monotonic() < deadline, "the bulk job did not complete"
        time.sleep(pause if pause is not None else answer.retry_after or 1)


def download(bulk: BulkDataClient, url: str) -> tuple[bytes, DownloadResult]:
    """Download a file; after a transient failure, resume from what the target holds."""
    target = io.BytesIO()
    result = patiently(
        lambda: bulk.download(
            url, requires_access_token=True, into=target, start_at=len(target.getbuffer())
        )
    )
    return target.getvalue(), result


def ordinary_members(sandbox: RunningSandbox) -> list[Any]:
    """Return the generated members (not the showcase member or the deliberate duplicates)."""
    return [m for m in sandbox.member_list()["members"] if m["patient_id"].startswith("for")]


def matched_group_id(bulk: BulkDataClient, members: list[Any]) -> str:
    """Run $bulk-member-match (PDex STU 2.1: the Groups come in the status answer)."""
    body = bulk_match_body(
        [member_bundle(m, consent=current_consent(recipient_npi=NPI)) for m in members]
    )
    status_url = patiently(
        lambda: bulk.kick_off("Group/$bulk-member-match", parameters=body, query=STU_2_1)
    )
    done = completed(bulk, status_url)
    assert done.manifest is None
    assert done.body["resourceType"] == "Parameters"
    (matched,) = [p for p in done.body["parameter"] if p["name"] == "MatchedMembers"]
    return str(matched["resource"]["id"])


def test_match_export_download_and_delete_against_a_holder(
    holder: RunningSandbox, http: PayerHttpClient
) -> None:
    bulk, backend = bulk_client(holder, http)
    members = ordinary_members(holder)[:3]
    consent = current_consent(recipient_npi=NPI)
    bundles = bulk_match_body([member_bundle(m, consent=consent) for m in members])

    # STU 2.2: a POST kick-off with Parameters; the Groups come as NDJSON files.
    match_url = bulk.kick_off("Group/$bulk-member-match", parameters=bundles)
    match = completed(bulk, match_url)
    assert match_url.startswith(f"{holder.fhir}/bulkstatus/")
    assert isinstance(match.manifest, BulkManifest)
    groups = {}
    for entry in match.manifest.output:
        content, result = download(bulk, entry.url)
        assert result.lines == entry.count
        for line in content.splitlines():
            group = json.loads(line)
            groups[group["code"]["coding"][0]["code"]] = group
    assert len(groups["match"]["member"]) == 3

    # Revoke one member's consent after the match: the export reports them in its error file.
    revoked = members[-1]["patient_id"]
    with backend.http(BULK_SCOPES) as plain:
        (held,) = [
            e["resource"]
            for e in plain.get("/Consent", params={"patient": f"Patient/{revoked}"}).json()["entry"]
        ]
        plain.put(
            f"/Consent/{held['id']}",
            content=json.dumps(held | {"status": "inactive"}),
            headers={"Content-Type": "application/fhir+json"},
        ).raise_for_status()

    # A GET kick-off; _type repeated counts as comma-delimited (§Kick-off Request).
    export_url = bulk.kick_off(
        f"Group/{groups['match']['id']}/$davinci-data-export",
        query={"exportType": PAYER_TO_PAYER, "_type": ["Patient,Condition", "Coverage"]},
    )
    export = completed(bulk, export_url)
    manifest = export.manifest
    assert manifest is not None
    assert manifest.requires_access_token is True
    assert manifest.transaction_time.tzinfo is not None
    assert {f.type for f in manifest.output} == {"Patient", "Condition", "Coverage"}
    for entry in manifest.output:
        content, result = download(bulk, entry.url)
        assert result.lines == entry.count == len(content.splitlines())
        assert result.bytes == len(content)
        assert {json.loads(line)["resourceType"] for line in content.splitlines()} == {entry.type}
    (error_file,) = manifest.error
    errors = bulk.read_error_file(error_file.url, requires_access_token=True)
    assert errors.issues == 1
    assert errors.unreadable_lines == 0
    assert revoked in errors.texts[0]

    assert bulk.delete(export_url) is True
    with pytest.raises(FhirPermanentError) as gone:
        bulk.poll(export_url)
    assert gone.value.code == "bulk_job_gone"
    assert gone.value.status == 404
    assert bulk.delete(export_url) is True  # gone already is fine


def test_a_refused_kick_off_is_permanent_in_the_holders_words(
    holder: RunningSandbox, http: PayerHttpClient
) -> None:
    bulk, _ = bulk_client(holder, http)
    group_id = matched_group_id(bulk, ordinary_members(holder)[3:4])

    with pytest.raises(FhirPermanentError) as refused:
        bulk.kick_off(f"Group/{group_id}/$davinci-data-export", query={"_type": "Patient"})

    assert refused.value.status == 400
    assert refused.value.code == "rejected"
    assert "exportType" in refused.value.message
    assert refused.value.message.startswith(f"{FORMER}'s server refused the request (HTTP 400): ")


def test_faults_are_survived_and_drops_resumed_without_a_duplicated_byte(
    http: PayerHttpClient,
) -> None:
    faults = "429=0.1,500=0.05,drop=0.5,bad-ndjson=0.5,retry-after=1s"
    with running_sandbox(FORMER, "--seed", SEED, "--members", "8", "--faults", faults) as flaky:
        bulk, _ = bulk_client(flaky, http)
        group_id = matched_group_id(bulk, ordinary_members(flaky)[:4])
        status_url = patiently(
            lambda: bulk.kick_off(
                f"Group/{group_id}/$export",
                query={"_type": "Patient,Condition,Observation,Encounter,Coverage"},
            )
        )
        manifest = completed(bulk, status_url).manifest
        assert manifest is not None
        assert bulk.fhir.token_provider is not None
        token = bulk.fhir.token_provider(False)
        clean = {entry.url: clean_download(entry.url, token) for entry in manifest.output}
        # Every file at least once, and on until drops have hit some (they are random).
        downloads = resumed = 0
        while downloads < len(manifest.output) or (resumed == 0 and downloads < 30):
            entry = manifest.output[downloads % len(manifest.output)]
            content, result = download(bulk, entry.url)
            assert hashlib.sha256(content).digest() == hashlib.sha256(clean[entry.url]).digest()
            assert result.lines == entry.count
            resumed += result.resumes + result.restarts
            downloads += 1

    assert resumed > 0, "no drop hit a file: the test proved nothing"


def clean_download(url: str, token: str) -> bytes:
    """Return the file as a plain client gets it whole, trying again after any fault."""
    for _ in range(30):
        try:
            response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        except httpx.TransportError:
            continue
        if response.status_code == 200:
            return response.content
        time.sleep(0.1)
    raise AssertionError(f"{url} never came whole")


def test_expired_files_and_jobs_say_so(http: PayerHttpClient) -> None:
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "4", "--faults", "export-ttl=2s"
    ) as sb:
        bulk, _ = bulk_client(sb, http)
        group_id = matched_group_id(bulk, ordinary_members(sb)[:1])
        status_url = bulk.kick_off(f"Group/{group_id}/$export", query={"_type": "Patient"})
        # Poll briskly here: the files live only two seconds after the job completes.
        manifest = completed(bulk, status_url, pause=0.1).manifest
        assert manifest is not None
        time.sleep(2.3)

        with pytest.raises(FhirPermanentError) as file_gone:
            bulk.download(manifest.output[0].url, requires_access_token=True, into=io.BytesIO())
        with pytest.raises(FhirPermanentError) as job_gone:
            bulk.poll(status_url)

    assert file_gone.value.code == "bulk_file_expired"
    assert file_gone.value.status == 410
    assert "Kick the request off again" in file_gone.value.message
    assert job_gone.value.code == "bulk_job_gone"
    assert job_gone.value.status == 410


def test_a_throttled_kick_off_and_poll_go_to_the_caller_with_retry_after(
    http: PayerHttpClient,
) -> None:
    faults = "429=1.0,retry-after=7s"
    with running_sandbox(FORMER, "--members", "4", "--faults", faults) as throttling:
        fhir = FhirClient(
            base_url=throttling.fhir,
            holder_name=FORMER,
            http=http,
            token_provider=lambda refresh: "any",
        )
        bulk = BulkDataClient(fhir)
        with pytest.raises(FhirTransientError) as kick_off:
            bulk.kick_off("Group/$bulk-member-match", parameters=bulk_match_body([]))
        with pytest.raises(FhirTransientError) as poll:
            bulk.poll(f"{throttling.fhir}/bulkstatus/0123")

    assert kick_off.value.code == poll.value.code == "throttled"
    assert kick_off.value.retry_after == poll.value.retry_after == 7
    # Neither call waited out the 7 s itself: the caller schedules the retry.
    assert fhir.retry_waits == []


# -- against a scripted server -----------------------------------------------------------------


@dataclass
class Answer:
    """One scripted answer; ``cut_at`` sends that many body bytes, then closes the connection."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut_at: int | None = None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    base: str
    # Answers per path (query string excluded), in order; the last one repeats.
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[Request] = field(default_factory=list)

    @property
    def fhir(self) -> str:
        return f"{self.base}/fhir"


@contextmanager
def scripted_server() -> Iterator[Script]:
    script = Script(base="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            path = self.path.split("?")[0]
            script.received.append(
                Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
            )
            queue = script.answers.get(path) or [Answer(404)]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body[: answer.cut_at])
            self.close_connection = True

        do_GET = do_POST = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    script.base = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutting down waits for one.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()


def stub_client(
    script: Script, http: PayerHttpClient, **kwargs: Any
) -> tuple[BulkDataClient, FhirClient]:
    fhir = FhirClient(
        base_url=script.fhir,
        holder_name="Stub Health",
        http=http,
        token_provider=lambda refresh: "stub-token",
        max_attempts=1,
    )
    return BulkDataClient(fhir, **kwargs), fhir


def outcome(code: str, text: str) -> bytes:
    issue = {"severity": "error", "code": code, "details": {"text": text}}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


def a_manifest(script: Script, **changes: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "transactionTime": "2026-01-05T10:00:00.123456789Z",
        "request": f"{script.fhir}/Group/1/$export",
        "requiresAccessToken": True,
        "output": [
            {"type": "Patient", "url": f"{script.fhir}/files/Patient.ndjson", "count": 2},
            {"type": "Condition", "url": f"{script.fhir}/files/Condition.ndjson"},
        ],
        "error": [{"type": "OperationOutcome", "url": f"{script.fhir}/files/errors.ndjson"}],
    }
    manifest.update(changes)
    return {k: v for k, v in manifest.items() if v is not ...}


STATUS = "/fhir/bulkstatus/1"
FILE = "/fhir/files/Patient.ndjson"
NDJSON_LINES = b"".join(
    json.dumps({"resourceType": "Patient", "id": str(n)}).encode() + b"\n" for n in range(40)
)


def test_kick_off_sends_the_bulk_headers_and_resolves_a_relative_location(
    http: PayerHttpClient,
) -> None:
    with scripted_server() as script:
        script.answers["/fhir/Group/1/$export"] = [
            Answer(202, headers={"Content-Location": "../bulkstatus/1"})
        ]
        bulk, _ = stub_client(script, http)
        posted = bulk.kick_off("Group/1/$export", parameters={"resourceType": "Parameters"})
        got = bulk.kick_off("Group/1/$export", query={"_type": ["Patient", "Condition"]})

    assert posted == got == f"{script.fhir}/Group/bulkstatus/1"
    post, get = script.received
    assert post.method == "POST"
    assert post.headers["Prefer"] == "respond-async"
    assert post.headers["Accept"] == "application/fhir+json"
    assert post.headers["Content-Type"] == "application/fhir+json"
    assert json.loads(post.body) == {"resourceType": "Parameters"}
    assert post.headers["Authorization"] == "Bearer stub-token"
    assert get.method == "GET"
    assert get.path == "/fhir/Group/1/$export?_type=Patient&_type=Condition"


@pytest.mark.parametrize(
    ("answer", "code", "words"),
    [
        (Answer(200, b"{}"), "not_asynchronous", "at once (HTTP 200)"),
        (Answer(202), "no_status_url", "no Content-Location"),
        (
            Answer(202, headers={"Content-Location": "http://127.0.0.1:9/status/1"}),
            "foreign_link",
            "gave 127.0.0.1 as the place to follow a bulk request",
        ),
        (
            Answer(202, headers={"Content-Location": "https://elsewhere.example/status/1"}),
            "foreign_link",
            "gave elsewhere.example",
        ),
        (Answer(201), "unexpected_status", "HTTP 201"),
    ],
)
def test_a_kick_off_answer_other_than_202_on_the_origin_is_refused(
    http: PayerHttpClient, answer: Answer, code: str, words: str
) -> None:
    with scripted_server() as script:
        script.answers["/fhir/Group/1/$export"] = [answer]
        bulk, _ = stub_client(script, http)
        with pytest.raises(FhirPermanentError) as refused:
            bulk.kick_off("Group/1/$export")

    assert refused.value.code == code
    assert words in refused.value.message


def test_a_pending_poll_gives_retry_after_as_long_as_the_server_says_and_progress(
    http: PayerHttpClient,
) -> None:
    in_two_hours = format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)
    with scripted_server() as script:
        script.answers[STATUS] = [
            Answer(202, headers={"Retry-After": "86400", "X-Progress": "50% complete"}),
            Answer(202, headers={"Retry-After": in_two_hours}),
            Answer(202),
        ]
        bulk, fhir = stub_client(script, http)
        started = time.monotonic()
        answers = [bulk.poll(f"{script.fhir}/bulkstatus/1") for _ in range(3)]

    first, second, third = answers
    assert first == BulkPending(retry_after=86400, progress="50% complete")
    assert isinstance(second, BulkPending)
    assert 7100 < (second.retry_after or 0) <= 7200
    assert third == BulkPending(retry_after=None, progress="")
    assert time.monotonic() - started < 2
    assert fhir.retry_waits == []
    assert script.received[0].headers["Accept"] == "application/json"


def test_a_complete_manifest_is_read(http: PayerHttpClient) -> None:
    with scripted_server() as script:
        body = a_manifest(script)
        script.answers[STATUS] = [Answer(200, json.dumps(body).encode())]
        bulk, _ = stub_client(script, http)
        done = bulk.poll(f"{script.fhir}/bulkstatus/1")

    assert isinstance(done, BulkDone)
    assert done.body == body
    manifest = done.manifest
    assert manifest is not None
    assert manifest.transaction_time == datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    assert manifest.requires_access_token is True
    assert [(f.type, f.count) for f in manifest.output] == [("Patient", 2), ("Condition", None)]
    assert [f.type for f in manifest.error] == ["OperationOutcome"]
    assert manifest.deleted == ()
    assert manifest.raw == body


MALFORMED = [
    ("not JSON", b"<html>busy</html>", "it is not JSON"),
    ("a list", b"[]", "it is a JSON list, not an object"),
    ("no transactionTime", {"transactionTime": ...}, "transactionTime is missing"),
    ("a date", {"transactionTime": "2026-01-05"}, 'transactionTime is "2026-01-05", not a FHIR'),
    ("no zone", {"transactionTime": "2026-01-05T10:00:00"}, "transactionTime is"),
    ("30 February", {"transactionTime": "2026-02-30T10:00:00Z"}, "transactionTime is"),
    ("output a dict", {"output": {"type": "Patient"}}, "output is {"),
    ("output missing", {"output": ...}, "output is missing"),
    ("error a string", {"error": "none"}, 'error is "none", not a list'),
    ("entry not object", {"output": ["Patient.ndjson"]}, "output[0] is"),
    ("no type", {"output": [{"url": "https://h.example/f"}]}, "output[0].type is null"),
    ("no url", {"output": [{"type": "Patient"}]}, "output[0].url is null"),
    ("relative url", {"output": [{"type": "Patient", "url": "f.ndjson"}]}, "output[0].url is"),
    (
        "negative count",
        {"output": [{"type": "Patient", "url": "https://h.example/f", "count": -1}]},
        "output[0].count is -1",
    ),
    (
        "text count",
        {"output": [{"type": "Patient", "url": "https://h.example/f", "count": "3"}]},
        'output[0].count is "3"',
    ),
    (
        "boolean count",
        {"output": [{"type": "Patient", "url": "https://h.example/f", "count": True}]},
        "output[0].count is true",
    ),
    ("token text", {"requiresAccessToken": "true"}, 'requiresAccessToken is "true"'),
    ("token missing", {"requiresAccessToken": ...}, "requiresAccessToken is missing"),
    ("error entry", {"error": [{"type": "OperationOutcome"}]}, "error[0].url is null"),
]


@pytest.mark.parametrize(
    ("change", "words"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_manifest_is_refused_naming_the_field(
    http: PayerHttpClient, change: bytes | dict[str, Any], words: str
) -> None:
    with scripted_server() as script:
        body = change if isinstance(change, bytes) else json.dumps(a_manifest(script, **change))
        script.answers[STATUS] = [Answer(200, body.encode() if isinstance(body, str) else body)]
        bulk, _ = stub_client(script, http)
        with pytest.raises(FhirPermanentError) as refused:
            bulk.poll(f"{script.fhir}/bulkstatus/1")

    assert refused.value.code == "malformed_manifest"
    assert words in refused.value.message
    assert refused.value.message.startswith(
        "Stub Health's server sent a bulk completion manifest the hub cannot use: "
    )
    assert "Ask Stub Health to correct its server" in refused.value.message


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (
            Answer(500, outcome("processing", "An internal timeout has occurred")),
            FhirPermanentError,
            "bulk_job_failed",
        ),
        (
            Answer(400, outcome("invalid", "Group 1 has no members")),
            FhirPermanentError,
            "bulk_job_failed",
        ),
        (Answer(500, outcome("transient", "database busy")), FhirTransientError, "server_error"),
        (Answer(409, outcome("lock-error", "try later")), FhirTransientError, "unavailable"),
        (Answer(502, b"<html>bad gateway</html>"), FhirTransientError, "server_error"),
        (
            Answer(503, outcome("processing", "down"), {"Retry-After": "120"}),
            FhirTransientError,
            "unavailable",
        ),
        (Answer(404, outcome("not-found", "unknown job")), FhirPermanentError, "bulk_job_gone"),
        (Answer(410), FhirPermanentError, "bulk_job_gone"),
    ],
)
def test_a_failed_status_is_sorted_by_its_operation_outcome(
    http: PayerHttpClient, answer: Answer, error: type[Exception], code: str
) -> None:
    with scripted_server() as script:
        script.answers[STATUS] = [answer]
        bulk, _ = stub_client(script, http)
        with pytest.raises(error) as failed:
            bulk.poll(f"{script.fhir}/bulkstatus/1")

    assert failed.value.code == code
    assert failed.value.status == answer.status


def test_the_job_s_own_failure_is_told_in_the_server_s_words(http: PayerHttpClient) -> None:
    with scripted_server() as script:
        script.answers[STATUS] = [Answer(500, outcome("processing", "An internal timeout"))]
        bulk, _ = stub_client(script, http)
        with pytest.raises(FhirPermanentError) as failed:
            bulk.poll(f"{script.fhir}/bulkstatus/1")

    assert failed.value.message == (
        "Stub Health's server reports that the bulk request failed (HTTP 500): An internal timeout."
    )


def test_a_parameters_completion_is_done_without_a_manifest(http: PayerHttpClient) -> None:
    parameters = {"resourceType": "Parameters", "parameter": []}
    with scripted_server() as script:
        script.answers[STATUS] = [Answer(200, json.dumps(parameters).encode())]
        bulk, _ = stub_client(script, http)
        done = bulk.poll(f"{script.fhir}/bulkstatus/1")

    assert done == BulkDone(manifest=None, body=parameters)


def test_a_dropped_file_resumes_with_range(http: PayerHttpClient) -> None:
    half = len(NDJSON_LINES) // 2 + 7  # mid-line
    with scripted_server() as script:
        script.answers[FILE] = [
            Answer(200, NDJSON_LINES, cut_at=half),
            Answer(
                206,
                NDJSON_LINES[half:],
                {"Content-Range": f"bytes {half}-{len(NDJSON_LINES) - 1}/{len(NDJSON_LINES)}"},
            ),
        ]
        bulk, _ = stub_client(script, http)
        target = io.BytesIO()
        result = bulk.download(f"{script.base}{FILE}", requires_access_token=True, into=target)

    assert target.getvalue() == NDJSON_LINES
    assert (result.bytes, result.lines, result.resumes, result.restarts) == (
        len(NDJSON_LINES),
        40,
        1,
        0,
    )
    first, second = script.received
    assert first.headers["Accept"] == "application/fhir+ndjson"
    assert "Range" not in first.headers
    assert second.headers["Range"] == f"bytes={half}-"


def test_a_server_that_ignores_range_is_read_again_from_the_start(http: PayerHttpClient) -> None:
    with scripted_server() as script:
        script.answers[FILE] = [
            Answer(200, NDJSON_LINES, cut_at=300),
            Answer(200, NDJSON_LINES, cut_at=500),
            Answer(200, NDJSON_LINES),
        ]
        bulk, _ = stub_client(script, http)
        target = io.BytesIO()
        result = bulk.download(f"{script.base}{FILE}", requires_access_token=True, into=target)

    assert target.getvalue() == NDJSON_LINES
    assert (result.lines, result.restarts) == (40, 2)
    assert [r.headers.get("Range") for r in script.received] == [None, "bytes=300-", "bytes=500-"]


def test_a_resumed_download_counts_the_lines_it_already_held(http: PayerHttpClient) -> None:
    held = 123
    with scripted_server() as script:
        script.answers[FILE] = [
            Answer(
                206,
                NDJSON_LINES[held:],
                {"Content-Range": f"bytes {held}-{len(NDJSON_LINES) - 1}/{len(NDJSON_LINES)}"},
            )
        ]
        bulk, _ = stub_client(script, http)
        target = io.BytesIO(NDJSON_LINES[:held] + b"junk past the prefix")
        result = bulk.download(
            f"{script.base}{FILE}", requires_access_token=True, into=target, start_at=held
        )

    assert target.getvalue() == NDJSON_LINES
    assert (result.bytes, result.lines) == (len(NDJSON_LINES), 40)


def test_a_download_that_cannot_progress_leaves_an_exact_prefix(http: PayerHttpClient) -> None:
    with scripted_server() as script:
        script.answers[FILE] = [Answer(200, NDJSON_LINES, cut_at=100), Answer(503)]
        bulk, _ = stub_client(script, http)
        target = io.BytesIO()
        with pytest.raises(FhirTransientError) as unavailable:
            bulk.download(f"{script.base}{FILE}", requires_access_token=True, into=target)

    assert unavailable.value.code == "unavailable"
    assert target.getvalue() == NDJSON_LINES[:100]


def test_a_last_line_without_newline_counts(http: PayerHttpClient) -> None:
    with scripted_server() as script:
        script.answers[FILE] = [Answer(200, b'{"a":1}\n{"b":2}')]
        bulk, _ = stub_client(script, http)
        result = bulk.download(
            f"{script.base}{FILE}", requires_access_token=False, into=io.BytesIO()
        )

    assert result.lines == 2


@pytest.mark.parametrize("status", [404, 410])
def test_a_file_gone_is_expired(http: PayerHttpClient, status: int) -> None:
    with scripted_server() as script:
        bulk, _ = stub_client(script, http)
        script.answers[FILE] = [Answer(status)]
        with pytest.raises(FhirPermanentError) as gone:
            bulk.download(f"{script.base}{FILE}", requires_access_token=True, into=io.BytesIO())

    assert gone.value.code == "bulk_file_expired"
    assert "Patient.ndjson" in gone.value.message


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_file_server_is_transient_with_retry_after(
    http: PayerHttpClient, status: int
) -> None:
    with scripted_server() as script:
        bulk, _ = stub_client(script, http)
        script.answers[FILE] = [Answer(status, headers={"Retry-After": "600"})]
        with pytest.raises(FhirTransientError) as busy:
            bulk.download(f"{script.base}{FILE}", requires_access_token=True, into=io.BytesIO())

    assert busy.value.retry_after == 600


def test_the_token_goes_to_files_on_the_fhir_origin_or_a_trusted_one_only(
    http: PayerHttpClient,
) -> None:
    with scripted_server() as script, scripted_server() as files:
        files.answers["/f.ndjson"] = [Answer(200, NDJSON_LINES)]
        elsewhere = f"{files.base}/f.ndjson"
        bulk, _ = stub_client(script, http)
        with pytest.raises(FhirPermanentError) as refused:
            bulk.download(elsewhere, requires_access_token=True, into=io.BytesIO())
        unsigned = bulk.download(elsewhere, requires_access_token=False, into=io.BytesIO())
        trusting, _ = stub_client(script, http, trusted_file_origins=[files.base])
        trusting.download(elsewhere, requires_access_token=True, into=io.BytesIO())

    assert refused.value.code == "foreign_link"
    assert "sends its token only to the FHIR server's own address" in refused.value.message
    assert unsigned.lines == 40
    without, with_token = files.received
    assert "Authorization" not in without.headers
    assert with_token.headers["Authorization"] == "Bearer stub-token"


def test_an_error_file_gives_its_first_texts_and_counts_every_issue(http: PayerHttpClient) -> None:
    lines = [outcome("processing", f"member {n} not exported") for n in range(60)]
    lines.append(b'{"resourceType": "OperationOut')
    with scripted_server() as script:
        script.answers["/fhir/files/errors.ndjson"] = [Answer(200, b"\n".join(lines) + b"\n")]
        bulk, _ = stub_client(script, http)
        errors = bulk.read_error_file(
            f"{script.fhir}/files/errors.ndjson", requires_access_token=True
        )

    assert errors.issues == 60
    assert errors.unreadable_lines == 1
    assert len(errors.texts) == 50
    assert errors.texts[0] == "member 0 not exported"


@pytest.mark.parametrize(
    ("status", "deleted"), [(202, True), (204, True), (404, True), (410, True), (500, False)]
)
def test_delete_tidies_up_and_never_raises_for_the_answer(
    http: PayerHttpClient, status: int, deleted: bool
) -> None:
    with scripted_server() as script:
        script.answers[STATUS] = [Answer(status)]
        bulk, _ = stub_client(script, http)
        assert bulk.delete(f"{script.fhir}/bulkstatus/1") is deleted

    assert [r.method for r in script.received] == ["DELETE"]
