from django.apps import AppConfig


class PlanAdminConfig(AppConfig):
    name = "plan_admin"
    verbose_name = "Plan-admin portal"
