from django.urls import path

from members import sign_in, views

app_name = "members"
urlpatterns = [
    path("", views.home, name="home"),
    path("plans/", views.directory, name="directory"),
    path("plans/invite/", views.invite_plan, name="invite-plan"),
    path("requests/", views.request_list, name="request-list"),
    path("requests/new/", views.request_new, name="request-new"),
    path("requests/<int:request_id>/", views.request_detail, name="request-detail"),
    path(
        "requests/<int:request_id>/progress.json", views.request_progress, name="request-progress"
    ),
    path("requests/<int:request_id>/authorize/", views.request_authorize, name="request-authorize"),
    path("requests/<int:request_id>/withdraw/", views.request_withdraw, name="request-withdraw"),
    path("launch/callback/", views.launch_callback, name="launch-callback"),
    path("consents/<int:consent_id>.json", views.consent_fhir, name="consent-fhir"),
    path("sign-out/", sign_in.sign_out, name="sign-out"),
    path("signed-out/", views.signed_out, name="signed-out"),
]
