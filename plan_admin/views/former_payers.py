"""Integration settings, *Former payers we ask*: how the hub is registered at each of them.

The choice (automatic RFC 7591, or the client ids a former payer issued out of band), the
registration's state and last error, and *Register again* (exchange/smart/
registration_settings.py does the work and the auditing).
"""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from exchange.models import RegistrationChoice
from exchange.radar.selectors import holder_probes_latest
from exchange.smart.registration import hub_jwks_url
from exchange.smart.registration_settings import (
    FormerPayerRegistration,
    holder_registration_configure,
    holder_registration_get,
    holder_registration_register_again,
    holder_registrations_list,
)
from hub.audit import client_address
from hub.htmx_requests import wants_fragment
from hub.models import Payer, Role
from hub.tenancy import tenant_view
from plan_admin.forms import HolderRegistrationForm
from plan_admin.views import acting_admin


def _detail_url(payer: Payer, former_payer: Payer) -> str:
    return reverse(
        "plan_admin:former-payer",
        kwargs={"payer_slug": payer.slug, "former_payer_slug": former_payer.slug},
    )


def _values_to_register(payer: Payer) -> list[tuple[str, str]]:
    """Return what the administrator registers at a former payer for manual registration."""
    launch = reverse("members:launch-callback", kwargs={"payer_slug": payer.slug})
    return [
        ("JWKS URL (the key set of the payer-to-payer client)", hub_jwks_url(payer=payer)),
        ("SMART launch redirect URI (the member sign-in client)", settings.HUB_PUBLIC_URL + launch),
    ]


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def former_payers_page(request: HttpRequest, payer: Payer) -> HttpResponse:
    """List the former payers this payer's members can ask, with the hub's registration at each."""
    entries = holder_registrations_list(payer=payer)
    # How each former payer last answered the compatibility radar: a holder that stopped
    # offering what this payer's pulls use shows here before a request fails.
    probes = holder_probes_latest(former_payer_ids=[entry.former_payer.pk for entry in entries])
    return render(
        request,
        "plan_admin/former_payers.html",
        {
            "payer": payer,
            "rows": [(entry, probes.get(entry.former_payer.pk)) for entry in entries],
        },
    )


def _initial(entry: FormerPayerRegistration) -> dict[str, Any]:
    registration = entry.registration
    if registration is None or registration.choice != RegistrationChoice.MANUAL:
        return {"choice": entry.choice}
    return {
        "choice": registration.choice,
        "backend_client_id": registration.backend_client_id,
        "member_client_id": registration.member_client_id,
    }


@tenant_view(Role.PLAN_ADMIN)
@require_http_methods(["GET", "POST"])
def former_payer_registration(
    request: HttpRequest, payer: Payer, former_payer_slug: str
) -> HttpResponse:
    """Show and change how the hub is registered at one former payer."""
    entry = holder_registration_get(payer=payer, former_payer_slug=former_payer_slug)
    status = 200
    if request.method == "POST":
        form = HolderRegistrationForm(data=request.POST, auto_id="registration-%s")
        if form.is_valid():
            try:
                holder_registration_configure(
                    payer=payer,
                    former_payer=entry.former_payer,
                    actor=acting_admin(request),
                    client_address=client_address(request),
                    **form.cleaned_data,
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, f"Registration at {entry.former_payer.name} saved.")
                return redirect(_detail_url(payer, entry.former_payer))
        status = 400
    else:
        form = HolderRegistrationForm(initial=_initial(entry), auto_id="registration-%s")
    if entry.registration and entry.registration.member_client_secret:
        form.fields[
            "member_client_secret"
        ].help_text = "Set — leave empty to keep it, or type a new value to replace it."
    return render(
        request,
        "plan_admin/former_payer_registration.html",
        {
            "payer": payer,
            "entry": entry,
            "form": form,
            "values_to_register": _values_to_register(payer),
        },
        status=status,
    )


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def former_payer_register_again(
    request: HttpRequest, payer: Payer, former_payer_slug: str
) -> HttpResponse:
    """Register the hub at the former payer anew and say how it went."""
    entry = holder_registration_get(payer=payer, former_payer_slug=former_payer_slug)
    registration = holder_registration_register_again(
        payer=payer,
        former_payer=entry.former_payer,
        actor=acting_admin(request),
        client_address=client_address(request),
    )
    if registration.last_error:
        messages.error(
            request,
            f"Registering again at {entry.former_payer.name} failed: {registration.last_error}",
        )
    else:
        messages.success(request, f"Registered again at {entry.former_payer.name}.")
    then = _detail_url(payer, entry.former_payer)
    if wants_fragment(request):
        # htmx showed the progress; a full load then shows the new state and the message.
        return HttpResponseClientRedirect(then)
    return redirect(then)
