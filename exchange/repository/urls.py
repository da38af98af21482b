"""Routes of repository key management, included under ``/p/<payer_slug>/admin/repository/``."""

from django.urls import path

from exchange.repository import views

app_name = "sftp_repository"
urlpatterns = [
    path("", views.repository_key_list, name="keys"),
    path("keys/<int:key_id>/revoke/", views.repository_key_revoke_view, name="key-revoke"),
]
