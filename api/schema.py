"""How the OpenAPI document describes the payer systems' sign-in (drf-spectacular extension)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from exchange.consents.endpoint.auth import PAYER_API_SCOPES, token_endpoint_url


class PayerSystemAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.PayerSystemAuthentication"
    name = "payerSystemToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scopes = "\n".join(f"- `{scope}`: {text}" for scope, text in PAYER_API_SCOPES.items())
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An access token of the hub's token endpoint "
                f"(`{token_endpoint_url()}`), as a SMART Backend Services client "
                "(SMART App Launch 2.x): `grant_type=client_credentials`, "
                "`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, "
                "a `client_assertion` JWT signed RS384 or ES384 with a key of the JWKS your "
                "administrators registered (`iss` = `sub` = your payer's slug, `aud` = the token "
                "URL, `exp` within 5 minutes, a fresh `jti`), and `scope` naming what you need. "
                "Tokens last 5 minutes and see your payer only. Scopes:\n\n" + scopes
            ),
        }
