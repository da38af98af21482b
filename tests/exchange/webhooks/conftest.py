"""Fixtures of the webhook tests: an endpoint of North's at a receiver on loopback."""

from collections.abc import Iterator

import pytest

from exchange.models import WebhookEndpoint
from exchange.webhooks.events import DELIVERY_READY, REQUEST_STATUS_CHANGED
from tests.conftest import Tenant
from tests.factories import WebhookEndpointFactory, WebhookSecretFactory
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """North's systems, listening for webhooks on a free loopback port."""
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def endpoint(north: Tenant, receiver: WebhookReceiver) -> WebhookEndpoint:
    """North's endpoint at ``receiver``, subscribed to everything, its secret given to it."""
    endpoint = WebhookEndpointFactory(
        payer=north.payer, url=receiver.url, event_types=[REQUEST_STATUS_CHANGED, DELIVERY_READY]
    )
    receiver.secrets.append(WebhookSecretFactory(endpoint=endpoint).secret)
    return endpoint
