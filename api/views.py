"""The payer-system API's endpoints: each parses, calls one service or selector, answers.

The caller's payer is the token's (api/authentication.py); every lookup is scoped to it.
"""

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import selectors
from api.authentication import (
    DeliveriesRead,
    OptInsRead,
    OptInsWrite,
    PayerSystemAuthentication,
    RequestsRead,
    payer_system,
)
from api.idempotency import HEADER, idempotent_post
from api.problems import PROBLEM_JSON, problem_exception_handler
from api.serializers import (
    PROBLEM,
    DeliveryOutSerializer,
    OptInInSerializer,
    OptInOutSerializer,
    RequestDetailSerializer,
    RequestFilterSerializer,
    RequestSummarySerializer,
)
from exchange.enrollment import opt_in_create, opt_in_withdraw
from exchange.models import OptInRecord
from hub.audit import client_address


def _problems(*codes: int) -> dict[Any, OpenApiResponse]:
    described = {
        400: "The body is not JSON.",
        401: "No access token, or one expired or not issued by this hub.",
        403: "The access token lacks the operation's scope.",
        404: "No such object of your payer.",
        409: "The member's opt-in for a payer named is open already; each is named in `errors`.",
        422: "Fields are missing or not acceptable; each is named in `errors`.",
    }
    return {
        (code, PROBLEM_JSON): OpenApiResponse(PROBLEM, description=described[code])
        for code in codes
    }


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

    def get_exception_handler(self) -> Any:
        return problem_exception_handler


class RequestCursor(CursorPagination):
    # Ids only grow: a stable order that new requests do not shift between pages.
    ordering = "-id"
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"
    invalid_cursor_message = "Give the cursor as a page's next or previous link has it."

    def decode_cursor(self, request: Request) -> Cursor | None:
        # DRF answers a cursor it cannot read with a 404; it is a bad query parameter (422).
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError(
                {self.cursor_query_param: [self.invalid_cursor_message]}
            ) from None


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
        responses={201: OptInOutSerializer, **_problems(400, 401, 403, 409, 422)},
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
    pagination_class = RequestCursor
    serializer_class = RequestSummarySerializer

    @extend_schema(
        operation_id="request_list",
        summary="List your requests, newest first",
        description="Scope `hub/requests.read`. Cursor-paginated: follow `next`.",
        parameters=[
            RequestFilterSerializer,
            OpenApiParameter(
                "cursor", str, description="Where a page starts: as given in `next`/`previous`."
            ),
            OpenApiParameter(
                "page_size",
                int,
                description=f"Requests a page, at most {RequestCursor.max_page_size}.",
            ),
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
