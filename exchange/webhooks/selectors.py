"""What the portal reads about webhooks: a payer's endpoints and recent messages, each scoped
to the payer so another payer's row is a 404 (STYLE.md #2)."""

from django.db.models import Prefetch, QuerySet

from exchange.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from hub.models import Payer
from hub.tenancy import get_for_payer_or_404


def webhook_endpoints_list(*, payer: Payer) -> QuerySet[WebhookEndpoint]:
    """Return the payer's endpoints, the active ones first."""
    return WebhookEndpoint.objects.for_payer(payer).order_by("-active", "created_at", "id")


def webhook_endpoint_for_admin(*, payer: Payer, endpoint_id: int) -> WebhookEndpoint:
    """Return one of the payer's endpoints, or 404 (also for another payer's)."""
    return get_for_payer_or_404(WebhookEndpoint.objects.all(), payer, pk=endpoint_id)


def webhook_message_for_admin(*, payer: Payer, message_id: int) -> WebhookMessage:
    """Return one of the payer's messages with its endpoint, or 404 (also for another payer's)."""
    return get_for_payer_or_404(
        WebhookMessage.objects.select_related("endpoint"), payer, pk=message_id
    )


def webhook_messages_recent(*, payer: Payer, limit: int = 25) -> list[WebhookMessage]:
    """Return the payer's latest messages with their endpoints and tries (three queries)."""
    return list(
        WebhookMessage.objects.for_payer(payer)
        .select_related("endpoint")
        .prefetch_related(
            Prefetch(
                "attempts", queryset=WebhookAttempt.objects.for_payer(payer).order_by("number")
            )
        )
        .order_by("-created_at", "-id")[:limit]
    )
