from django.urls import path

from exchange.consents.endpoint import views

urlpatterns = [
    path("metadata", views.metadata, name="consent-endpoint-metadata"),
    path("Consent/<int:consent_id>", views.consent_read, name="consent-endpoint-consent"),
    path("Subscription", views.subscription_create, name="consent-endpoint-subscriptions"),
    path(
        "Subscription/<int:subscription_id>",
        views.subscription_detail,
        name="consent-endpoint-subscription",
    ),
]
