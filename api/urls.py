"""``/api/v1/``: the payer-system API, its OpenAPI schema and its interactive page."""

from django.urls import include, path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from api import views
from api.problems import no_such_path


class ObjectIdConverter:
    """An object's id: digits that fit PostgreSQL's bigint, so a longer number is a 404 of
    its own rather than a database error (hub/settings.py describes it to OpenAPI)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(ObjectIdConverter, "object_id")
app_name = "api"

v1 = [
    path("opt-ins", views.OptInCollection.as_view(), name="opt-ins"),
    path("opt-ins/<object_id:opt_in_id>", views.OptInDetail.as_view(), name="opt-in-detail"),
    path(
        "opt-ins/<object_id:opt_in_id>/withdraw",
        views.OptInWithdraw.as_view(),
        name="opt-in-withdraw",
    ),
    path("requests", views.RequestCollection.as_view(), name="requests"),
    path("requests/<object_id:request_id>", views.RequestDetail.as_view(), name="request-detail"),
    path(
        "requests/<object_id:request_id>/deliveries",
        views.RequestDeliveries.as_view(),
        name="request-deliveries",
    ),
    path("cohorts", views.CohortCollection.as_view(), name="cohorts"),
    path("cohorts/<object_id:cohort_id>", views.CohortDetail.as_view(), name="cohort-detail"),
    # The schema covers this URLconf only: the plan administrators' API is another audience.
    path("schema/", SpectacularAPIView.as_view(urlconf="api.urls"), name="schema"),
    # The split view serves Swagger UI's start-up script from a URL of its own rather than
    # inline, so the page runs under the hub's Content-Security-Policy (script-src 'self').
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    # Last: any other path is a problem document too, not the portal's HTML 404.
    # [\s\S]: a path with an encoded newline (%0A) is any other path too.
    re_path(r"^[\s\S]*$", no_such_path, name="no-such-path"),
]

urlpatterns = [path("api/v1/", include(v1))]
