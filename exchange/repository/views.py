"""Plan administrators manage the SSH keys their systems collect files from the repository with.

Mounted under ``/p/<payer_slug>/admin/repository/``; another payer's key is a 404.
"""

from typing import cast

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from exchange.repository.forms import RepositoryKeyForm
from exchange.repository.models import RepositoryKey
from exchange.repository.selectors import repository_connection_details, repository_keys
from exchange.repository.services import repository_key_register, repository_key_revoke
from hub.audit import client_address
from hub.models import Payer, Role, User
from hub.tenancy import get_for_payer_or_404, tenant_view


def _page(
    request: HttpRequest, payer: Payer, form: RepositoryKeyForm, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "plan_admin/repository_keys.html",
        {
            "payer": payer,
            "form": form,
            "keys": repository_keys(payer=payer),
            "connection": repository_connection_details(payer=payer),
        },
        status=status,
    )


@tenant_view(Role.PLAN_ADMIN)
@require_http_methods(["GET", "POST"])
def repository_key_list(request: HttpRequest, payer: Payer) -> HttpResponse:
    """Show how to connect and the registered keys; register a new key (POST)."""
    if request.method != "POST":
        return _page(request, payer, RepositoryKeyForm(payer=payer))
    form = RepositoryKeyForm(request.POST, payer=payer)
    if not form.is_valid():
        return _page(request, payer, form, status=400)
    key = repository_key_register(
        payer=payer,
        label=form.cleaned_data["label"],
        public_key=form.cleaned_data["public_key"],
        allowed_sources=form.cleaned_data["allowed_sources"],
        expires_at=form.cleaned_data["expires_on"],
        created_by=cast(User, request.user),
        client_address=client_address(request),
    )
    messages.success(request, f"Key “{key.label}” ({key.fingerprint}) registered.")
    return redirect("sftp_repository:keys", payer_slug=payer.slug)


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def repository_key_revoke_view(request: HttpRequest, payer: Payer, key_id: int) -> HttpResponse:
    """Revoke one of the payer's keys; its system can no longer sign in."""
    key = get_for_payer_or_404(RepositoryKey.objects.all(), payer, pk=key_id)
    repository_key_revoke(
        key=key, revoked_by=cast(User, request.user), client_address=client_address(request)
    )
    messages.success(request, f"Key “{key.label}” revoked.")
    return redirect("sftp_repository:keys", payer_slug=payer.slug)
