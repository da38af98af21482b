"""``/p/<slug>/welcome/<token>/``: a new payer's first plan administrator sets up sign-in.

Reached with the one-time link a hub operator issued (hub/first_admin_links.py), by a person
who cannot sign in yet: no session is needed or trusted until the last step. The person
registers the hub at their identity provider, saves and tests it here, then signs in through
it; the sign-in comes back to ``done/``, which uses the link up when the provider's role
claim made them a plan administrator, and otherwise says what to correct, link still alive.
"""

from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hub.audit import client_address
from hub.connectivity import ConnectivityReport
from hub.first_admin_links import LinkRefused, first_admin_link_open, first_admin_link_redeem
from hub.htmx_requests import wants_fragment
from hub.models import FirstAdministratorLink, IdentityProvider, Payer, Role, User
from plan_admin import connectivity, services
from plan_admin.forms import IdentityProviderForm
from plan_admin.views.integration import hub_values_to_register

_ACTOR_LABEL = "first administrator's link"
_TEMPLATE = "plan_admin/first_admin.html"


def _link_or_refusal(
    request: HttpRequest, payer_slug: str, token: str
) -> tuple[Payer, FirstAdministratorLink | HttpResponse]:
    payer = get_object_or_404(Payer, slug=payer_slug)
    try:
        return payer, first_admin_link_open(payer=payer, token=token)
    except LinkRefused as exc:
        return payer, render(
            request, "plan_admin/first_admin_refused.html", {"payer": payer, "reason": str(exc)},
            status=exc.status,
        )  # fmt: skip


def _page(
    request: HttpRequest,
    payer: Payer,
    link: FirstAdministratorLink,
    token: str,
    *,
    form: IdentityProviderForm | None = None,
    report: ConnectivityReport | None = None,
    status: int = 200,
) -> HttpResponse:
    provider = IdentityProvider.objects.for_payer(payer).first()
    return render(
        request,
        _TEMPLATE,
        {
            "payer": payer,
            "link": link,
            "token": token,
            # What the payer registers at its identity provider: the OpenID Connect values.
            "hub_values": hub_values_to_register(payer)[:2],
            "idp_form": form or IdentityProviderForm(instance=provider, auto_id="idp-%s"),
            "provider_saved": provider is not None,
            "report": report,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
def first_admin_welcome(request: HttpRequest, payer_slug: str, token: str) -> HttpResponse:
    """Show the steps (GET); save the identity provider (POST), audited as the link's."""
    payer, link = _link_or_refusal(request, payer_slug, token)
    if isinstance(link, HttpResponse):
        return link
    if request.method == "GET":
        return _page(request, payer, link, token)
    provider = IdentityProvider.objects.for_payer(payer).first()
    form = IdentityProviderForm(data=request.POST, instance=provider, auto_id="idp-%s")
    if form.is_valid():
        values = {name: form.cleaned_data[name] for name in form._meta.fields or ()}
        try:
            services.integration_setting_save(
                model=IdentityProvider, payer=payer, actor=None, actor_label=_ACTOR_LABEL,
                values=values, client_address=client_address(request),
            )  # fmt: skip
        except (services.SettingRefused, ValidationError) as exc:
            form.add_error(None, exc if isinstance(exc, ValidationError) else str(exc))
        else:
            messages.success(request, "Identity provider saved. Test it, then sign in through it.")
            return redirect(request.path + "#test")
    return _page(request, payer, link, token, form=form, status=400)


@require_POST
def first_admin_test(request: HttpRequest, payer_slug: str, token: str) -> HttpResponse:
    """Run the identity provider's *Test*, as the settings page does."""
    payer, link = _link_or_refusal(request, payer_slug, token)
    if isinstance(link, HttpResponse):
        return link
    provider = IdentityProvider.objects.for_payer(payer).first()
    if provider is None:
        report = ConnectivityReport(subject="Identity provider")
        report.failed("Find the settings", "Save the identity provider first, then test it.")
    else:
        report = connectivity.identity_provider_check(identity_provider=provider)
    if wants_fragment(request):
        return render(request, "plan_admin/_report.html", {"report": report})
    return _page(request, payer, link, token, report=report)


@require_POST
def first_admin_sign_in(request: HttpRequest, payer_slug: str, token: str) -> HttpResponse:
    """Send the person to sign in through the saved provider, and back to ``done/``."""
    payer, link = _link_or_refusal(request, payer_slug, token)
    if isinstance(link, HttpResponse):
        return link
    done = reverse("first-admin-done", kwargs={"payer_slug": payer.slug, "token": token})
    sign_in = reverse("sign-in", kwargs={"payer_slug": payer.slug})
    return redirect(f"{sign_in}?{urlencode({'next': done})}")


@require_GET
def first_admin_done(request: HttpRequest, payer_slug: str, token: str) -> HttpResponse:
    """Use the link up if the person signed in as this payer's plan administrator."""
    payer, link = _link_or_refusal(request, payer_slug, token)
    if isinstance(link, HttpResponse):
        return link
    user = request.user
    if not isinstance(user, User) or user.payer_id != payer.pk:
        messages.error(request, f"Sign in through {payer.name}'s identity provider first.")
        return redirect(reverse("first-admin", kwargs={"payer_slug": payer.slug, "token": token}))
    if user.role != Role.PLAN_ADMIN:
        provider = IdentityProvider.objects.for_payer(payer).get()
        logout(request)
        messages.error(
            request,
            f"You signed in, but {payer.name}'s identity provider did not say you are a plan "
            f"administrator: its claim {provider.claim_role!r} did not carry the administrator "
            f"value {provider.role_admin_value!r}, so you would sign in as a member. Correct "
            "the role claim settings below (or give yourself that value at the provider), "
            "then sign in again. This link still works.",
        )
        return redirect(reverse("first-admin", kwargs={"payer_slug": payer.slug, "token": token}))
    try:
        first_admin_link_redeem(
            link=link, administrator=user, client_address=client_address(request)
        )
    except LinkRefused as exc:
        logout(request)
        return render(
            request, "plan_admin/first_admin_refused.html", {"payer": payer, "reason": str(exc)},
            status=exc.status,
        )  # fmt: skip
    messages.success(
        request,
        f"You are {payer.name}'s first plan administrator. The link you used no longer works: "
        "from now on, sign in through your identity provider.",
    )
    return redirect(reverse("plan_admin:settings", kwargs={"payer_slug": payer.slug}))
