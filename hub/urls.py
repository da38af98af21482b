from django.contrib import admin
from django.urls import include, path

from hub import views
from plan_admin.api import router as plan_admin_api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("operator/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("p/<slug:payer_slug>/.well-known/jwks.json", views.jwks, name="payer-jwks"),
    path("p/<slug:payer_slug>/me/", include("members.urls")),
    path("p/<slug:payer_slug>/api/", include(plan_admin_api.urls)),
]
