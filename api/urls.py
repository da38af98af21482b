"""``/api/v1/``: the payer-system API, its OpenAPI schema and its interactive page."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api import views

app_name = "api"

v1 = [
    path("opt-ins", views.OptInCollection.as_view(), name="opt-ins"),
    path("opt-ins/<int:opt_in_id>", views.OptInDetail.as_view(), name="opt-in-detail"),
    path("opt-ins/<int:opt_in_id>/withdraw", views.OptInWithdraw.as_view(), name="opt-in-withdraw"),
    path("requests", views.RequestCollection.as_view(), name="requests"),
    path("requests/<int:request_id>", views.RequestDetail.as_view(), name="request-detail"),
    path(
        "requests/<int:request_id>/deliveries",
        views.RequestDeliveries.as_view(),
        name="request-deliveries",
    ),
    # The schema covers this URLconf only: the plan administrators' API is another audience.
    path("schema/", SpectacularAPIView.as_view(urlconf="api.urls"), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns = [path("api/v1/", include(v1))]
