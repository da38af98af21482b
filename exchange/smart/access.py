"""The access token of an exchange request at its former payer, whichever way it was authorized."""

from exchange.fhir.client import TokenProvider
from exchange.models import AuthorizationMode, ExchangeRequest
from exchange.smart.backend_services import backend_access_token
from exchange.smart.member_launch import member_access_token


def access_token_for(exchange_request: ExchangeRequest, *, force_refresh: bool = False) -> str:
    """Return a usable token: the member's (member-authorized) or the new payer's (backend).

    ``force_refresh`` renews it even if it looks valid (the holder answered 401).
    """
    if exchange_request.authorization_mode == AuthorizationMode.MEMBER_AUTHORIZED:
        return member_access_token(exchange_request=exchange_request, force_refresh=force_refresh)
    return backend_access_token(
        payer=exchange_request.payer,
        former_payer=exchange_request.former_payer,
        force_refresh=force_refresh,
    )


def token_provider_for(exchange_request: ExchangeRequest) -> TokenProvider:
    """Return the FhirClient token provider of ``exchange_request``."""

    def provide(force_refresh: bool) -> str:
        return access_token_for(exchange_request, force_refresh=force_refresh)

    return provide
