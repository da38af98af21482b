"""Seed the demo: three payers that are also sandbox payers, their keys, and an operator.

Western Peaks offers only member-authorized access, so the demo shows both ways the hub
gets records: payer to payer, and the member signing in at the former plan.

Idempotent: running it again updates the same rows.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from hub.demo import DEMO_PAYERS, MEMBER_AUTHORIZATION_ONLY
from hub.models import FhirEndpoint, IdentityProvider, OperatorAuthenticator, Payer, PayerStatus
from hub.operator_accounts import operator_account_save, operator_authenticator_issue
from hub.signing_keys import signing_keys_ensure


class Command(BaseCommand):
    help = "Create or update the demo payers, their signing keys and the hub operator account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--operator-password", required=True)
        parser.add_argument(
            "--operator-authenticator-key",
            required=True,
            help="the operator's TOTP secret in hex, kept with the demo's other secrets",
        )
        parser.add_argument(
            "--sandbox",
            action="append",
            default=[],
            metavar="SLUG=BASE_URL",
            help="a running sandbox payer for SLUG (e.g. north=http://127.0.0.1:8101)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sandboxes = dict(item.split("=", 1) for item in options["sandbox"])
        with transaction.atomic():
            for slug, name, npi, payer_id, states, plan_types in DEMO_PAYERS:
                payer, _ = Payer.objects.update_or_create(
                    slug=slug,
                    defaults={
                        "name": name,
                        "npi": npi,
                        "payer_identifier": payer_id,
                        "states": states,
                        "plan_types": plan_types,
                        "status": PayerStatus.PARTICIPATING,
                        "contact_email": f"interop@{slug}.example",
                    },
                )
                signing_keys_ensure(payer=payer)
                if slug in sandboxes:
                    base = sandboxes[slug].rstrip("/")
                    FhirEndpoint.objects.update_or_create(
                        payer=payer,
                        defaults={"base_url": f"{base}/fhir",
                                  "offers_backend_services": slug not in MEMBER_AUTHORIZATION_ONLY,
                                  "offers_member_authorization": True,
                                  "token_url": f"{base}/auth/token",
                                  "authorize_url": f"{base}/auth/authorize"},
                    )  # fmt: skip
                    # The sandbox's documented demo client (sandbox/README.md "Accounts").
                    IdentityProvider.objects.update_or_create(
                        payer=payer,
                        defaults={"issuer": f"{base}/oidc", "client_id": "hub",
                                  "client_secret": "hub-demo-secret"},
                    )  # fmt: skip
                    # The sandbox's own systems call the hub's Consent endpoint with these keys.
                    payer.client_jwks_url = f"{base}/sandbox/client-jwks.json"
                    payer.save(update_fields=["client_jwks_url"])
            operator = operator_account_save(
                username="operator", password=options["operator_password"]
            )
            key = options["operator_authenticator_key"]
            device = OperatorAuthenticator.objects.filter(user=operator).first()
            if device is None or device.key != key:
                operator_authenticator_issue(operator=operator, key_hex=key)
        self.stdout.write("demo data ready")
