"""Wrap every request: injected faults, OperationOutcomes for crashes, Content-Length."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from sandbox.faults import cut_off, sleep_for
from sandbox.fhir.outcomes import operation_outcome
from sandbox.runtime import current

logger = logging.getLogger("sandbox")
UNFAULTED_PREFIXES = ("/fhir/metadata", "/fhir/.well-known/")


def _is_fhir_data(path: str) -> bool:
    return path.startswith("/fhir/") and not path.startswith(UNFAULTED_PREFIXES)


class SandboxMiddleware:
    """Inject configured faults into FHIR data requests and never leak a stack trace."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        sandbox = current()
        plan = sandbox.config.faults
        drop = False
        if plan.touches_responses and _is_fhir_data(request.path):
            sleep_for(plan)
            decision = sandbox.fault_dice.roll()
            if decision.status is not None:
                headers = {}
                if decision.status in (429, 503):
                    headers["Retry-After"] = str(max(1, round(plan.retry_after_s)))
                return operation_outcome(
                    decision.status,
                    "throttled" if decision.status == 429 else "transient",
                    f"injected fault: {decision.status}",
                    headers=headers,
                )
            drop = decision.drop
        response = self.get_response(request)
        if isinstance(response, StreamingHttpResponse):
            content = response.streaming_content
            if drop and response.has_header("Content-Length") and isinstance(content, Iterator):
                # A bulk file is cut off halfway too: clients must resume or start again.
                response.streaming_content = cut_off(
                    content, keep=int(response["Content-Length"]) // 2
                )
            return response
        if not isinstance(response, HttpResponse):
            return response
        if drop:
            body = response.content
            streaming = StreamingHttpResponse(
                cut_off([body], keep=len(body) // 2), status=response.status_code
            )
            for name, value in response.items():
                streaming[name] = value
            streaming["Content-Length"] = str(len(body))
            return streaming
        response["Content-Length"] = str(len(response.content))
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        """Answer an unexpected error with an OperationOutcome and log it server-side."""
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return operation_outcome(500, "exception", "internal error; the sandbox log has details")
