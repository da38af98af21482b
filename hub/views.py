"""Hub-wide endpoints: health, the published signing keys, the landing page."""

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

from hub.celery import app as celery_app
from hub.models import Payer, PayerStatus
from hub.signing_keys import payer_jwks

BROKER_CHECK_TIMEOUT_SECONDS = 3


def _database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


def _broker_reachable() -> bool:
    try:
        with celery_app.connection_for_write(url=settings.CELERY_BROKER_URL) as broker:
            broker.ensure_connection(max_retries=1, timeout=BROKER_CHECK_TIMEOUT_SECONDS)
            return True
    except Exception:
        return False


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Report whether the database and the broker answer; 503 if either does not."""
    checks = {
        "database": "ok" if _database_reachable() else "unreachable",
        "broker": "ok" if _broker_reachable() else "unreachable",
    }
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unhealthy", **checks}, status=200 if healthy else 503
    )


@require_GET
@cache_control(public=True, max_age=300)
def jwks(request: HttpRequest, payer_slug: str) -> JsonResponse:
    """Publish the payer's public signing keys (active and in grace period) as a JWKS."""
    payer = get_object_or_404(Payer, slug=payer_slug)
    return JsonResponse(payer_jwks(payer=payer), content_type="application/jwk-set+json")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Show what the hub is and which payers take part."""
    payers = Payer.objects.filter(status=PayerStatus.PARTICIPATING).only("name", "slug", "states")
    return render(request, "home.html", {"payers": payers})
