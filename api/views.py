"""The payer-system API's endpoints: each parses, calls one service or selector, answers.

The caller's payer is the token's (api/authentication.py); every lookup is scoped to it.
"""

from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import selectors
from api.authentication import (
    CohortsRead,
    CohortsWrite,
    DeliveriesRead,
    OptInsRead,
    OptInsWrite,
    PayerSystemAuthentication,
    RequestsRead,
    payer_system,
)
from api.idempotency import HEADER, idempotent_post
from api.parsers import NDJSON, JsonBodyParser, NdjsonParser
from api.problems import PROBLEM_JSON, problem_exception_handler, problem_response
from api.serializers import (
    PROBLEM,
    CohortDetailSerializer,
    CohortInSerializer,
    CohortQuerySerializer,
    CohortSummarySerializer,
    DeliveryOutSerializer,
    OptInInSerializer,
    OptInOutSerializer,
    RequestDetailSerializer,
    RequestFilterSerializer,
    RequestSummarySerializer,
)
from exchange.bulk.roster import MAX_MEMBERS, RosterRefused, roster_of_members
from exchange.bulk.services import CohortRefused, cohorts_create
from exchange.enrollment import opt_in_create, opt_in_withdraw
from exchange.models import Cohort, OptInRecord
from hub.audit import client_address


def _problems(*codes: int) -> dict[Any, OpenApiResponse]:
    described = {
        400: "The body is not JSON.",
        401: "No access token, or one expired or not issued by this hub.",
        403: "The access token lacks the operation's scope.",
        404: "No such object of your payer.",
        409: "The member's opt-in for a payer named is open already; each is named in `errors`.",
        413: f"The body is larger than {COHORT_MAX_BYTES // 2**20} MiB; post fewer members at once.",
        422: "Fields are missing or not acceptable; each is named in `errors`.",
        429: "The member was looked for at a payer named too often (HRex: member matching "
        "resists guessing); `Retry-After` and `detail` say when to send the opt-in again.",
    }
    return {
        (code, PROBLEM_JSON): OpenApiResponse(PROBLEM, description=described[code])
        for code in codes
    }


# A cohort's body, read whole: MAX_MEMBERS members of some 1 KiB each at most (a roster row
# is about 300 bytes), so a runaway upload is refused before it is read.
COHORT_MAX_BYTES = MAX_MEMBERS * 1024


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="A key of your choosing (a UUID): the same POST sent again with it gets the "
    "first response replayed (`Idempotent-Replayed: true`) and creates nothing new; the key "
    "with another body is a 422. Keys are kept "
    f"{settings.API_IDEMPOTENCY_KEY_HOURS} hours; after that the key starts a new POST.",
)


class PayerSystemView(APIView):
    """Base of the API's views: bearer tokens only, errors as problem documents."""

    authentication_classes = [PayerSystemAuthentication]
    # DRF's defaults, JSON read by the hub's one JSON reader.
    parser_classes = [JsonBodyParser, FormParser, MultiPartParser]

    def get_exception_handler(self) -> Any:
        return problem_exception_handler


class IdCursor(CursorPagination):
    # Ids only grow: a stable order that new requests do not shift between pages.
    ordering = "-id"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    invalid_cursor_message = "Give the cursor as a page's next or previous link has it."

    def decode_cursor(self, request: Request) -> Cursor | None:
        # DRF answers a cursor it cannot read with a 404; it is a bad query parameter (422).
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            cursor = None
            valid = False
        else:
            # DRF takes the position as any text; compared with the bigint id, anything but
            # digits that fit it is a database error. The hub's own links hold ids only.
            # The stubs say int; DRF gives the text of the cursor's ``p``.
            position = str(cursor.position) if cursor and cursor.position is not None else None
            valid = position is None or (
                position.isascii() and position.isdigit() and len(position) <= 18
            )
        if not valid:
            raise exceptions.ValidationError(
                {self.cursor_query_param: [self.invalid_cursor_message]}
            )
        return cursor


CURSOR_PARAMETERS = [
    OpenApiParameter(
        "cursor", str, description="Where a page starts: as given in `next`/`previous`."
    ),
    OpenApiParameter(
        "page_size", int, description=f"Items a page, at most {IdCursor.max_page_size}."
    ),
]


def _opt_in_answer(
    request: Request, opt_in: OptInRecord, *, status_code: int = status.HTTP_200_OK
) -> Response:
    payer = payer_system(request).payer
    serializer = OptInOutSerializer(
        opt_in,
        context={
            "request": request,
            "exchange_requests": selectors.opt_in_requests(payer=payer, opt_in=opt_in),
        },
    )
    return Response(serializer.data, status=status_code)


class OptInCollection(PayerSystemView):
    permission_classes = [OptInsWrite]

    @extend_schema(
        operation_id="opt_in_create",
        summary="Post a member's opt-in obtained at enrollment",
        description="Scope `hub/opt-ins.write`. The hub finds or creates the member (claimable "
        "at their first sign-in), writes an HRex Consent and opens one payer-to-payer request "
        "per previous and concurrent payer, due one week after the later of the new coverage's "
        "start and the opt-in (CMS-0057-F); the attestation is kept as the opt-in record. All "
        "of it, or nothing. An opt-in of the member for a payer whose request is still open "
        "(the same opt-in sent again, or twice at once) is a 409 naming that payer.",
        request=OptInInSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: OptInOutSerializer, **_problems(400, 401, 403, 409, 422, 429)},
        tags=["opt-ins"],
    )
    def post(self, request: Request) -> Response:
        system = payer_system(request)

        def respond() -> Response:
            serializer = OptInInSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            opt_in = opt_in_create(
                new_payer=system.payer,
                actor_label=system.actor_label,
                client_address=client_address(request),
                **serializer.opt_in_arguments(),
            )
            return _opt_in_answer(request, opt_in, status_code=status.HTTP_201_CREATED)

        return idempotent_post(request=request, payer=system.payer, respond=respond)


class OptInDetail(PayerSystemView):
    permission_classes = [OptInsRead]

    @extend_schema(
        operation_id="opt_in_read",
        summary="Read an opt-in and its requests",
        description="Scope `hub/opt-ins.read`.",
        responses={200: OptInOutSerializer, **_problems(401, 403, 404)},
        tags=["opt-ins"],
    )
    def get(self, request: Request, opt_in_id: int) -> Response:
        payer = payer_system(request).payer
        return _opt_in_answer(request, selectors.opt_in_get(payer=payer, opt_in_id=opt_in_id))


class OptInWithdraw(PayerSystemView):
    permission_classes = [OptInsWrite]

    @extend_schema(
        operation_id="opt_in_withdraw",
        summary="Withdraw an opt-in (the member opted out)",
        description="Scope `hub/opt-ins.write`. As when the member withdraws in the portal: "
        "each consent becomes inactive, former payers subscribed to it are notified, and every "
        "request not yet ended ends `revoked`; delivered records stay delivered. Withdrawing "
        "again changes nothing.",
        request=None,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: OptInOutSerializer, **_problems(401, 403, 404, 422)},
        tags=["opt-ins"],
    )
    def post(self, request: Request, opt_in_id: int) -> Response:
        system = payer_system(request)

        def respond() -> Response:
            opt_in = opt_in_withdraw(
                payer=system.payer,
                opt_in_id=opt_in_id,
                actor_label=system.actor_label,
                client_address=client_address(request),
            )
            return _opt_in_answer(request, opt_in)

        return idempotent_post(request=request, payer=system.payer, respond=respond)


class RequestCollection(PayerSystemView, generics.GenericAPIView[Any]):
    permission_classes = [RequestsRead]
    pagination_class = IdCursor
    serializer_class = RequestSummarySerializer

    @extend_schema(
        operation_id="request_list",
        summary="List your requests, newest first",
        description="Scope `hub/requests.read`. Cursor-paginated: follow `next`.",
        parameters=[
            RequestFilterSerializer,
            *CURSOR_PARAMETERS,
        ],
        responses={200: RequestSummarySerializer(many=True), **_problems(401, 403, 422)},
        tags=["requests"],
    )
    def get(self, request: Request) -> Response:
        filters = RequestFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        requests = selectors.exchange_requests_of_payer(
            payer=payer_system(request).payer,
            status=filters.validated_data.get("status"),
            former_payer=filters.validated_data.get("former_payer"),
            member_id=filters.validated_data.get("member_id"),
            opt_in_id=filters.validated_data.get("opt_in"),
            cohort_id=filters.validated_data.get("cohort"),
        )
        page = self.paginate_queryset(requests)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class RequestDetail(PayerSystemView):
    permission_classes = [RequestsRead]

    @extend_schema(
        operation_id="request_read",
        summary="Read a request: its state, dates, reason and timeline",
        description="Scope `hub/requests.read`.",
        responses={200: RequestDetailSerializer, **_problems(401, 403, 404)},
        tags=["requests"],
    )
    def get(self, request: Request, request_id: int) -> Response:
        exchange_request = selectors.exchange_request_get(
            payer=payer_system(request).payer, request_id=request_id
        )
        return Response(
            RequestDetailSerializer(exchange_request, context={"request": request}).data
        )


class RequestDeliveries(PayerSystemView):
    permission_classes = [DeliveriesRead]

    @extend_schema(
        operation_id="request_deliveries",
        summary="List a request's deliveries and their files",
        description="Scope `hub/deliveries.read`. Each delivered file's path on your SFTP "
        "destination, its size and sha256, as the hub recorded them landing.",
        responses={200: DeliveryOutSerializer(many=True), **_problems(401, 403, 404)},
        tags=["requests"],
    )
    def get(self, request: Request, request_id: int) -> Response:
        payer = payer_system(request).payer
        exchange_request = selectors.exchange_request_get(payer=payer, request_id=request_id)
        deliveries = selectors.exchange_request_deliveries(
            payer=payer, exchange_request=exchange_request
        )
        return Response(DeliveryOutSerializer(deliveries, many=True).data)


# --- Cohorts ------------------------------------------------------------------------------


def _cohort_answer(
    request: Request, cohort: Cohort, *, status_code: int = status.HTTP_200_OK
) -> Response:
    payer = payer_system(request).payer
    serializer = CohortDetailSerializer(
        cohort,
        context={
            "request": request,
            "members_by_status": selectors.cohort_members_by_status(payer=payer, cohort=cohort),
            "jobs": selectors.cohort_jobs(payer=payer, cohort=cohort),
        },
    )
    return Response(serializer.data, status=status_code)


def _roster_refused(exc: RosterRefused, *, ndjson: bool) -> Response:
    """Return the 422 naming each member at fault: ``members[i].field`` in a JSON body, the
    field and its ``line`` in an NDJSON one (a number of 0 is the post as a whole)."""
    errors: list[dict[str, Any]] = []
    for problem in exc.problems:
        if ndjson:
            error: dict[str, Any] = {"field": problem.column or "body", "message": problem.message}
            if problem.line:
                error["line"] = problem.line
        elif problem.line:
            member = f"members[{problem.line - 1}]"
            field = f"{member}.{problem.column}" if problem.column else member
            error = {"field": field, "message": problem.message}
        else:
            error = {"field": problem.column or "members", "message": problem.message}
        errors.append(error)
    return problem_response(
        422,
        "The cohort was refused; nothing was recorded. Fix the members listed and post it again.",
        errors=errors,
    )


class CohortCollection(PayerSystemView, generics.GenericAPIView[Any]):
    pagination_class = IdCursor
    serializer_class = CohortSummarySerializer
    parser_classes = [JsonBodyParser, NdjsonParser]

    def get_permissions(self) -> list[Any]:
        return [CohortsWrite()] if self.request.method == "POST" else [CohortsRead()]

    @extend_schema(
        operation_id="cohort_create",
        summary="Post a cohort: members asked of one former payer in bulk",
        description="Scope `hub/cohorts.write`. As a roster a plan administrator uploads: each "
        "member gets an HRex Consent and a payer-to-payer request on the rule's clock, and "
        "the hub asks the former payer for all of them with `$bulk-member-match` and a bulk "
        "export (PDex STU 2.2). Post JSON (`former_payer`, `name`, `members`) or NDJSON, one "
        f"member a line, with `former_payer` and `name` in the query (`Content-Type: {NDJSON}`). "
        "Every member is checked first; any at fault refuses the whole post with a 422 naming "
        "each (`members[i].field`, or the `line` and field), and nothing is recorded.",
        request={"application/json": CohortInSerializer, NDJSON: OpenApiTypes.STR},
        parameters=[
            IDEMPOTENCY_PARAMETER,
            OpenApiParameter(
                "former_payer",
                str,
                description="NDJSON bodies only: the former payer's 10-digit NPI or its hub slug.",
            ),
            OpenApiParameter("name", str, description="NDJSON bodies only: the cohort's name."),
        ],
        responses={201: CohortDetailSerializer, **_problems(400, 401, 403, 413, 422)},
        tags=["cohorts"],
    )
    def post(self, request: Request) -> Response:
        system = payer_system(request)

        def respond() -> Response:
            length = request.META.get("CONTENT_LENGTH") or "0"
            if not length.isdigit() or int(length) > COHORT_MAX_BYTES:
                return problem_response(
                    413,
                    f"The body is larger than {COHORT_MAX_BYTES // 2**20} MiB; post at most "
                    f"{MAX_MEMBERS:,} members at once, or fewer.",
                )
            data: Any = request.data
            ndjson = isinstance(data, str)  # api/parsers.py
            given: serializers.Serializer[Any] = (
                CohortQuerySerializer(data=request.query_params)
                if ndjson
                else CohortInSerializer(data=data)
            )
            given.is_valid(raise_exception=True)
            former_payer = given.validated_data["former_payer"]
            members = data if ndjson else given.validated_data["members"]
            try:
                roster = roster_of_members(
                    members=members,
                    former_payer=former_payer,
                    new_payer=system.payer,
                    now=timezone.now(),
                )
                (cohort,) = cohorts_create(
                    new_payer=system.payer,
                    created_by=None,
                    roster=roster,
                    name=given.validated_data["name"].strip()
                    or f"Posted on {timezone.localdate().isoformat()}",
                    roster_name=f"POST /api/v1/cohorts ({roster.format})",
                    client_address=client_address(request),
                    actor_label=system.actor_label,
                )
            except RosterRefused as exc:
                return _roster_refused(exc, ndjson=ndjson)
            except CohortRefused as exc:
                return problem_response(
                    422,
                    "The cohort was refused; nothing was recorded.",
                    errors=[{"field": "former_payer", "message": str(exc)}],
                )
            return _cohort_answer(request, cohort, status_code=status.HTTP_201_CREATED)

        return idempotent_post(request=request, payer=system.payer, respond=respond)

    @extend_schema(
        operation_id="cohort_list",
        summary="List your cohorts, newest first",
        description="Scope `hub/cohorts.read`. Cursor-paginated: follow `next`.",
        parameters=CURSOR_PARAMETERS,
        responses={200: CohortSummarySerializer(many=True), **_problems(401, 403, 422)},
        tags=["cohorts"],
    )
    def get(self, request: Request) -> Response:
        cohorts = selectors.cohorts_of_payer(payer=payer_system(request).payer)
        page = self.paginate_queryset(cohorts)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class CohortDetail(PayerSystemView):
    permission_classes = [CohortsRead]

    @extend_schema(
        operation_id="cohort_read",
        summary="Read a cohort: its state, its members' states, its jobs",
        description="Scope `hub/cohorts.read`. How many members' requests are in each state "
        "(follow each in `GET /api/v1/requests`), and each match and export job at the former "
        "payer.",
        responses={200: CohortDetailSerializer, **_problems(401, 403, 404)},
        tags=["cohorts"],
    )
    def get(self, request: Request, cohort_id: int) -> Response:
        payer = payer_system(request).payer
        return _cohort_answer(request, selectors.cohort_get(payer=payer, cohort_id=cohort_id))
