from django.contrib import admin
from django.urls import include, path

from exchange.consents.endpoint import auth as consent_endpoint_auth
from hub import views
from members.sign_in import PayerCallbackView, PayerSignInView
from operator_console.operations import operations_view
from plan_admin.api import router as plan_admin_api
from plan_admin.views import first_admin

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    # Before the console's own URLs, whose catch-all would answer 404; behind its sign-in.
    path(
        "operator/operations/",
        admin.site.admin_view(operations_view),
        name="operator-operations",
    ),
    # The console's own sign-in page is its only password sign-in (operator_console/site.py):
    # Django's accounts/ pages would be a second door without the second factor.
    path("operator/", admin.site.urls),
    path("p/<slug:payer_slug>/.well-known/jwks.json", views.jwks, name="payer-jwks"),
    path("oidc/callback/", PayerCallbackView.as_view(), name="oidc_authentication_callback"),
    path("p/<slug:payer_slug>/sign-in/", PayerSignInView.as_view(), name="sign-in"),
    path("p/<slug:payer_slug>/me/", include("members.urls")),
    path("fhir/auth/token", consent_endpoint_auth.token, name="hub-token"),
    path("p/<slug:payer_slug>/fhir/", include("exchange.consents.endpoint.urls")),
    path("p/<slug:payer_slug>/api/", include(plan_admin_api.urls)),
    path("p/<slug:payer_slug>/admin/repository/", include("exchange.repository.urls")),
    path("p/<slug:payer_slug>/admin/", include("plan_admin.urls")),
    path(
        "p/<slug:payer_slug>/welcome/<str:token>/",
        first_admin.first_admin_welcome,
        name="first-admin",
    ),
    path(
        "p/<slug:payer_slug>/welcome/<str:token>/test/",
        first_admin.first_admin_test,
        name="first-admin-test",
    ),
    path(
        "p/<slug:payer_slug>/welcome/<str:token>/sign-in/",
        first_admin.first_admin_sign_in,
        name="first-admin-sign-in",
    ),
    path(
        "p/<slug:payer_slug>/welcome/<str:token>/done/",
        first_admin.first_admin_done,
        name="first-admin-done",
    ),
    path("", include("api.urls")),
]
