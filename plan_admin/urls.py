"""Routes of the plan-admin portal, under ``/p/<payer_slug>/admin/``."""

from django.urls import path

from plan_admin.views import (
    cohorts,
    directory,
    education,
    former_payers,
    integration,
    reports,
    requests,
    schedules,
    webhooks,
)

app_name = "plan_admin"
urlpatterns = [
    path("", integration.settings_page, name="settings"),
    path("settings/<slug:part>/", integration.settings_save, name="settings-save"),
    path("settings/<slug:part>/test/", integration.settings_test, name="settings-test"),
    path("sftp-host-key/", integration.sftp_host_key_fetch, name="sftp-host-key"),
    path(
        "client-certificate/",
        integration.client_certificate_upload_view,
        name="client-certificate-upload",
    ),
    path(
        "client-certificate/<int:certificate_id>/remove/",
        integration.client_certificate_remove_view,
        name="client-certificate-remove",
    ),
    path("signing-keys/rotate/", integration.signing_key_rotate_view, name="signing-key-rotate"),
    path("former-payers/", former_payers.former_payers_page, name="former-payers"),
    path(
        "former-payers/<slug:former_payer_slug>/",
        former_payers.former_payer_registration,
        name="former-payer",
    ),
    path(
        "former-payers/<slug:former_payer_slug>/register-again/",
        former_payers.former_payer_register_again,
        name="former-payer-register-again",
    ),
    path("webhooks/", webhooks.webhooks_page, name="webhooks"),
    path("webhooks/new/", webhooks.webhook_endpoint_create, name="webhook-create"),
    path(
        "webhooks/<int:endpoint_id>/rotate/",
        webhooks.webhook_secret_rotate,
        name="webhook-rotate",
    ),
    path(
        "webhooks/<int:endpoint_id>/deactivate/",
        webhooks.webhook_endpoint_deactivate,
        name="webhook-deactivate",
    ),
    path("webhooks/<int:endpoint_id>/test/", webhooks.webhook_test_send, name="webhook-test"),
    path(
        "webhooks/messages/<int:message_id>/redeliver/",
        webhooks.webhook_message_redeliver,
        name="webhook-redeliver",
    ),
    path("directory/", directory.directory, name="directory"),
    path("directory/onboarding/", directory.onboarding_request_create, name="onboarding-create"),
    path("requests/", requests.request_list, name="request-list"),
    path("requests/export.csv", requests.request_export, name="request-export"),
    path("requests/<int:request_id>/", requests.request_detail, name="request-detail"),
    path(
        "requests/<int:request_id>/<slug:action>/", requests.request_action, name="request-action"
    ),
    path("cohorts/", cohorts.cohort_list, name="cohort-list"),
    path("cohorts/new/", cohorts.cohort_upload, name="cohort-upload"),
    path("cohorts/roster_example.csv", cohorts.roster_example, name="cohort-roster-example"),
    path("cohorts/<int:cohort_id>/", cohorts.cohort_detail, name="cohort-detail"),
    path(
        "cohorts/<int:cohort_id>/members.csv",
        cohorts.cohort_members_export,
        name="cohort-members-export",
    ),
    path("cohorts/<int:cohort_id>/cancel/", cohorts.cohort_cancel, name="cohort-cancel"),
    path(
        "cohorts/<int:cohort_id>/jobs/<int:job_id>/retry/",
        cohorts.cohort_chunk_retry,
        name="cohort-chunk-retry",
    ),
    path("recurring-pulls/", schedules.schedule_list, name="schedule-list"),
    path("recurring-pulls/export.csv", schedules.schedule_export, name="schedule-export"),
    path("recurring-pulls/settings/", schedules.pull_settings_save, name="pull-settings-save"),
    path(
        "recurring-pulls/<int:schedule_id>/<slug:action>/",
        schedules.schedule_action,
        name="schedule-action",
    ),
    path("compliance/", reports.compliance, name="compliance"),
    path("member-education/", education.member_education_page, name="member-education"),
    path(
        "member-education/publish/",
        education.member_education_publish,
        name="member-education-publish",
    ),
    path("as-former-payer/", reports.as_former_payer, name="as-former-payer"),
]
