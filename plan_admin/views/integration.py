"""Integration settings: the hub's values to register at the payer, the payer's systems, *Test*."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from exchange.connectivity import fhir_endpoint_check
from exchange.delivery import sftp as sftp_delivery
from exchange.delivery.protocol import DeliveryFailed
from exchange.radar.selectors import endpoint_probes_of
from hub.audit import client_address
from hub.client_certificates import (
    client_certificate_expired,
    client_certificate_of,
    client_certificate_remove,
    client_certificate_upload,
)
from hub.connectivity import ConnectivityReport
from hub.htmx_requests import wants_fragment
from hub.models import (
    FhirEndpoint,
    IdentityProvider,
    Payer,
    Role,
    SftpDestination,
    SigningAlgorithm,
)
from hub.signing_keys import signing_key_rotate
from hub.ssh_keys import parse_public_key_line, sha256_fingerprint
from hub.tenancy import tenant_view
from plan_admin import connectivity, selectors, services
from plan_admin.forms import (
    ClientCertificateForm,
    ClientJwksForm,
    DeliveryModeForm,
    FhirEndpointForm,
    IdentityProviderForm,
    SftpDestinationForm,
    SftpHostKeyFetchForm,
)
from plan_admin.views import acting_admin


@dataclass(frozen=True)
class _Part:
    """One section of the settings page: its form, the service that saves it, its row."""

    form_class: type[forms.ModelForm[Any]]
    context_name: str
    save: Callable[..., Model]
    instance: Callable[[Payer], Model | None]
    saved_message: str


def _fresh_payer(payer: Payer) -> Payer:
    # A form validates on its instance; give it a copy so a refused value never
    # reaches the payer object the page renders.
    return Payer.objects.get(pk=payer.pk)


_PARTS = {
    "fhir-endpoint": _Part(
        FhirEndpointForm, "fhir_form", partial(services.integration_setting_save, model=FhirEndpoint),
        lambda payer: FhirEndpoint.objects.for_payer(payer).first(), "FHIR endpoint saved.",
    ),
    "identity-provider": _Part(
        IdentityProviderForm, "idp_form", partial(services.integration_setting_save, model=IdentityProvider),
        lambda payer: IdentityProvider.objects.for_payer(payer).first(), "Identity provider saved.",
    ),
    "client-jwks": _Part(
        ClientJwksForm, "client_jwks_form", services.payer_settings_update, _fresh_payer,
        "Client key set URL saved.",
    ),
    "delivery-mode": _Part(
        DeliveryModeForm, "delivery_mode_form", services.payer_settings_update, _fresh_payer,
        "Delivery mode saved.",
    ),
    "sftp-destination": _Part(
        SftpDestinationForm, "sftp_form", partial(services.integration_setting_save, model=SftpDestination),
        lambda payer: SftpDestination.objects.for_payer(payer).first(), "SFTP destination saved.",
    ),
}  # fmt: skip


def _part_form(part: str, payer: Payer, **kwargs: Any) -> forms.ModelForm[Any]:
    """Return the form of one section; ids carry the section, as fields repeat across sections."""
    spec = _PARTS[part]
    return spec.form_class(instance=spec.instance(payer), auto_id=f"{part}-%s", **kwargs)


def _settings_url(payer: Payer, part: str = "") -> str:
    url = reverse("plan_admin:settings", kwargs={"payer_slug": payer.slug})
    return f"{url}#{part}" if part else url


def hub_values_to_register(payer: Payer) -> list[tuple[str, str, str]]:
    """Return (what, value, where to register it) for the values the payer registers."""
    base = settings.HUB_PUBLIC_URL
    jwks = base + reverse("payer-jwks", kwargs={"payer_slug": payer.slug})
    signed_out = base + reverse("members:signed-out", kwargs={"payer_slug": payer.slug})
    return [
        ("OpenID Connect redirect URI", f"{base}/oidc/callback/",
         "at your identity provider, for the hub's client id"),
        ("OpenID Connect post-logout redirect URI", signed_out,
         "at your identity provider, for the hub's client id (where people land after signing out)"),
        ("SMART launch redirect URI", f"{base}/p/{payer.slug}/me/launch/callback/",
         "at the former payers whose members authorize with SMART App Launch"),
        ("JWKS URL of your signing keys", jwks,
         "at former payers, as the key set of your SMART Backend Services client; at your "
         "identity provider too, when the hub signs in with private_key_jwt"),
    ]  # fmt: skip


def _settings_page(
    request: HttpRequest,
    payer: Payer,
    *,
    status: int = 200,
    reports: dict[str, ConnectivityReport] | None = None,
    **bound_forms: forms.BaseForm,
) -> HttpResponse:
    """Render the settings page; ``bound_forms`` replace the default form of their section."""
    page_forms: dict[str, forms.BaseForm] = {
        spec.context_name: _part_form(part, payer) for part, spec in _PARTS.items()
    }
    page_forms["client_certificate_form"] = ClientCertificateForm(auto_id="client-certificate-%s")
    page_forms.update(bound_forms)
    certificate = client_certificate_of(payer=payer)
    context: dict[str, Any] = {
        "payer": payer,
        "hub_values": hub_values_to_register(payer),
        "signing_keys": selectors.signing_keys_published(payer=payer),
        "algorithms": SigningAlgorithm.choices,
        # The compatibility radar's latest probe of the payer's endpoint, and its latest change.
        "last_probe": endpoint_probes_of(payer=payer).first(),
        "last_change": endpoint_probes_of(payer=payer).exclude(changes=[]).first(),
        "client_certificate": certificate,
        "client_certificate_expired": certificate and client_certificate_expired(certificate),
        # Template variables cannot contain dashes: "fhir-endpoint" is shown as fhir_endpoint.
        "reports": {part.replace("-", "_"): report for part, report in (reports or {}).items()},
        **page_forms,
    }
    return render(request, "plan_admin/settings.html", context, status=status)


@tenant_view(Role.PLAN_ADMIN)
@require_GET
def settings_page(request: HttpRequest, payer: Payer) -> HttpResponse:
    return _settings_page(request, payer)


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def settings_save(request: HttpRequest, payer: Payer, part: str) -> HttpResponse:
    """Validate one section's form and save it through its service (audited)."""
    spec = _PARTS.get(part)
    if spec is None:
        raise Http404("No such settings section.")
    form = _part_form(part, payer, data=request.POST)
    if form.is_valid():
        values = {name: form.cleaned_data[name] for name in form._meta.fields or ()}
        try:
            spec.save(
                payer=payer,
                actor=acting_admin(request),
                values=values,
                client_address=client_address(request),
            )
        except (services.SettingRefused, ValidationError) as exc:
            form.add_error(None, exc if isinstance(exc, ValidationError) else str(exc))
        else:
            messages.success(request, spec.saved_message)
            return redirect(_settings_url(payer, part))
    return _settings_page(request, payer, status=400, reports=None, **{spec.context_name: form})


def _not_configured(subject: str, what: str) -> ConnectivityReport:
    report = ConnectivityReport(subject=subject)
    report.failed("Find the settings", f"Save the {what} first, then test it.")
    return report


def _test_fhir_endpoint(payer: Payer) -> ConnectivityReport:
    endpoint = FhirEndpoint.objects.for_payer(payer).first()
    if endpoint is None:
        return _not_configured("FHIR endpoint", "FHIR endpoint")
    return fhir_endpoint_check(endpoint=endpoint)


def _test_identity_provider(payer: Payer) -> ConnectivityReport:
    identity_provider = IdentityProvider.objects.for_payer(payer).first()
    if identity_provider is None:
        return _not_configured("Identity provider", "identity provider")
    return connectivity.identity_provider_check(identity_provider=identity_provider)


def _test_client_jwks(payer: Payer) -> ConnectivityReport:
    if not payer.client_jwks_url:
        return _not_configured("Client keys", "URL of your client key set")
    return connectivity.client_jwks_check(jwks_url=payer.client_jwks_url)


def _test_sftp_destination(payer: Payer) -> ConnectivityReport:
    destination = SftpDestination.objects.for_payer(payer).first()
    if destination is None:
        return _not_configured("SFTP destination", "SFTP destination")
    return sftp_delivery.sftp_destination_check(destination=destination)


_TESTS: dict[str, Callable[[Payer], ConnectivityReport]] = {
    "fhir-endpoint": _test_fhir_endpoint,
    "identity-provider": _test_identity_provider,
    "client-jwks": _test_client_jwks,
    "sftp-destination": _test_sftp_destination,
}


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def settings_test(request: HttpRequest, payer: Payer, part: str) -> HttpResponse:
    """Run the *Test* of one saved section and show its report beside it."""
    test = _TESTS.get(part)
    if test is None:
        raise Http404("No such test.")
    report = test(payer)
    if wants_fragment(request):
        # The button's result region takes the report; the rest of the page stays as it is.
        return render(request, "plan_admin/_report.html", {"report": report})
    return _settings_page(request, payer, reports={part: report})


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def sftp_host_key_fetch(request: HttpRequest, payer: Payer) -> HttpResponse:
    """Fetch the SFTP server's host key and put it in the form for the administrator to confirm.

    Nothing is saved: the administrator compares the fingerprint with the one their
    SFTP administrator gives them, then saves the form to pin the key.
    """
    location = SftpHostKeyFetchForm(data=request.POST)
    report = ConnectivityReport(subject="SFTP host key")
    typed = {
        name: request.POST.get(name, "")
        for name in ("host", "port", "username", "host_key", "remote_directory")
    }
    if not location.is_valid():
        for field, errors in location.errors.items():
            report.failed(f"Check the {field}", " ".join(str(error) for error in errors))
        return _host_key_answer(request, payer, report, typed, status=400)
    host, port = location.cleaned_data["host"], location.cleaned_data["port"]
    try:
        line = sftp_delivery.sftp_host_key_fetch(host=host, port=port)
    except DeliveryFailed as exc:
        report.failed("Fetch the host key", exc.message)
    else:
        typed["host_key"] = line
        fingerprint = sha256_fingerprint(parse_public_key_line(line))
        report.passed(
            "Fetch the host key",
            f"{host}:{port} presents the {line.split()[0]} key {fingerprint}. Compare it with "
            "the fingerprint your SFTP administrator gives you, then save to pin it.",
        )
    return _host_key_answer(request, payer, report, typed)


def _host_key_answer(
    request: HttpRequest,
    payer: Payer,
    report: ConnectivityReport,
    typed: dict[str, str],
    *,
    status: int = 200,
) -> HttpResponse:
    """Answer a host key fetch: the report, and the form holding what was typed (and the key)."""
    sftp_form = _part_form("sftp-destination", payer, initial=typed)
    if wants_fragment(request):
        # htmx swaps the report under the button and, out of band, the host key field only:
        # whatever else the administrator typed in the form stays untouched.
        return render(
            request,
            "plan_admin/_host_key_fetched.html",
            {"report": report, "field": sftp_form["host_key"]},
            status=status,
        )
    return _settings_page(
        request, payer, status=status, reports={"sftp-host-key": report}, sftp_form=sftp_form
    )


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def signing_key_rotate_view(request: HttpRequest, payer: Payer) -> HttpResponseRedirect:
    """Replace the payer's active signing key; the previous one stays published for the grace period."""
    algorithm = request.POST.get("algorithm", "")
    if algorithm not in SigningAlgorithm.values:
        messages.error(request, "Choose RS384 or ES384 to rotate.")
        return redirect(_settings_url(payer, "signing-keys"))
    key = signing_key_rotate(
        payer=payer,
        algorithm=algorithm,
        actor=acting_admin(request),
        client_address=client_address(request),
    )
    messages.success(
        request,
        f"New {algorithm} key {key.kid} is active; the previous one stays published for "
        f"{settings.SIGNING_KEY_GRACE_DAYS} days.",
    )
    return redirect(_settings_url(payer, "signing-keys"))


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def client_certificate_upload_view(request: HttpRequest, payer: Payer) -> HttpResponse:
    """Check the uploaded certificate and key and make them the payer's, replacing any; audited."""
    form = ClientCertificateForm(
        data=request.POST, files=request.FILES, auto_id="client-certificate-%s"
    )
    if form.is_valid():
        try:
            certificate = client_certificate_upload(
                payer=payer,
                certificate_pem=form.file_bytes("certificate"),
                private_key_pem=form.file_bytes("private_key"),
                actor=acting_admin(request),
                client_address=client_address(request),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(
                request,
                f"Client certificate saved: {certificate.subject}, valid until "
                f"{certificate.not_after:%Y-%m-%d}. The hub presents it to former payers that "
                "ask for one.",
            )
            return redirect(_settings_url(payer, "client-certificate"))
    return _settings_page(request, payer, status=400, client_certificate_form=form)


@tenant_view(Role.PLAN_ADMIN)
@require_POST
def client_certificate_remove_view(
    request: HttpRequest, payer: Payer, certificate_id: int
) -> HttpResponse:
    """Remove the payer's client certificate (another payer's is a 404); audited."""
    client_certificate_remove(
        payer=payer,
        certificate_id=certificate_id,
        actor=acting_admin(request),
        client_address=client_address(request),
    )
    messages.success(
        request,
        "Client certificate removed. Former payers that require mutual TLS will refuse the "
        "hub's calls for your members until you upload another.",
    )
    then = _settings_url(payer, "client-certificate")
    if wants_fragment(request):
        # The dialog posted with htmx; a full load shows the card without the certificate.
        return HttpResponseClientRedirect(then)
    return redirect(then)
