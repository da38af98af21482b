from django.urls import path

from members import views

app_name = "members"
urlpatterns = [
    path("requests/", views.request_list, name="request-list"),
    path("requests/<int:request_id>/", views.request_detail, name="request-detail"),
    path("consents/<int:consent_id>.json", views.consent_fhir, name="consent-fhir"),
]
