"""The *Webhooks* page of the integration settings: endpoints, secrets, test events, messages.

A new or rotated secret is shown in the answer to the POST that made it, never stored
in the session nor rendered again (the page says so); that answer is not cached.
"""

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from exchange.models import WebhookEndpoint
from exchange.webhooks import selectors, services
from hub.audit import client_address
from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin.forms import WebhookEndpointForm, WebhookRotateForm
from plan_admin.views import acting_admin, action_run


def _webhooks_url(payer: Payer, anchor: str = "") -> str:
    url = reverse("plan_admin:webhooks", kwargs={"payer_slug": payer.slug})
    return f"{url}#{anchor}" if anchor else url


def _webhooks_page(
    request: HttpRequest,
    payer: Payer,
    *,
    status: int = 200,
    form: WebhookEndpointForm | None = None,
    new_secret: str = "",
    secret_endpoint: WebhookEndpoint | None = None,
) -> HttpResponse:
    context: dict[str, Any] = {
        "payer": payer,
        "endpoints": selectors.webhook_endpoints_list(payer=payer),
        "webhook_messages": selectors.webhook_messages_recent(payer=payer),
        "form": form or WebhookEndpointForm(auto_id="webhook-%s"),
        "rotate_form": WebhookRotateForm(auto_id="rotate-%s"),
        "new_secret": new_secret,
        "secret_endpoint": secret_endpoint,
    }
    response = render(request, "plan_admin/webhooks.html", context, status=status)
    if new_secret:
        add_never_cache_headers(response)
    return response


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def webhooks_page(request: HttpRequest, payer: Payer) -> HttpResponse:
    return _webhooks_page(request, payer)


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def webhook_endpoint_create(request: HttpRequest, payer: Payer) -> HttpResponse:
    """Register an endpoint; the answer shows its secret, once."""
    form = WebhookEndpointForm(data=request.POST, auto_id="webhook-%s")
    if form.is_valid():
        try:
            endpoint, secret = services.webhook_endpoint_create(
                payer=payer,
                actor=acting_admin(request),
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                event_types=form.cleaned_data["event_types"],
                client_address=client_address(request),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return _webhooks_page(
                request, payer, status=201, new_secret=secret, secret_endpoint=endpoint
            )
    return _webhooks_page(request, payer, status=400, form=form)


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def webhook_secret_rotate(request: HttpRequest, payer: Payer, endpoint_id: int) -> HttpResponse:
    """Give the endpoint a new secret; the answer shows it, once."""
    endpoint = selectors.webhook_endpoint_for_admin(payer=payer, endpoint_id=endpoint_id)
    rotate = WebhookRotateForm(data=request.POST)
    hours = rotate.cleaned_data["overlap_hours"] if rotate.is_valid() else None
    if hours is None:
        return _webhooks_page(request, payer, status=400)
    secret = services.webhook_secret_rotate(
        endpoint=endpoint,
        actor=acting_admin(request),
        overlap=timedelta(hours=hours),
        client_address=client_address(request),
    )
    return _webhooks_page(request, payer, new_secret=secret, secret_endpoint=endpoint)


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def webhook_endpoint_deactivate(
    request: HttpRequest, payer: Payer, endpoint_id: int
) -> HttpResponseRedirect | HttpResponseClientRedirect:
    endpoint = selectors.webhook_endpoint_for_admin(payer=payer, endpoint_id=endpoint_id)
    return action_run(
        request,
        lambda: services.webhook_endpoint_deactivate(
            endpoint=endpoint, actor=acting_admin(request), client_address=client_address(request)
        ),
        refused=services.WebhookRefused,
        done="Endpoint deactivated; the hub sends it nothing more.",
        then=_webhooks_url(payer, "endpoints"),
    )


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def webhook_test_send(
    request: HttpRequest, payer: Payer, endpoint_id: int
) -> HttpResponseRedirect | HttpResponseClientRedirect:
    """Send a ``webhook.test`` message now; its try is listed with the messages."""
    endpoint = selectors.webhook_endpoint_for_admin(payer=payer, endpoint_id=endpoint_id)
    return action_run(
        request,
        lambda: services.webhook_test_send(
            endpoint=endpoint, actor=acting_admin(request), client_address=client_address(request)
        ),
        refused=services.WebhookRefused,
        done="Test event sent; its try is listed under Recent messages.",
        then=_webhooks_url(payer, "messages"),
    )


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def webhook_message_redeliver(
    request: HttpRequest, payer: Payer, message_id: int
) -> HttpResponseRedirect | HttpResponseClientRedirect:
    message = selectors.webhook_message_for_admin(payer=payer, message_id=message_id)
    return action_run(
        request,
        lambda: services.webhook_message_redeliver(
            message=message, actor=acting_admin(request), client_address=client_address(request)
        ),
        refused=services.WebhookRefused,
        done=f"Message {message.message_id} sent again.",
        then=_webhooks_url(payer, "messages"),
    )
