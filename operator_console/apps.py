from django.apps import AppConfig


class OperatorConsoleConfig(AppConfig):
    name = "operator_console"
    verbose_name = "Operator console"
