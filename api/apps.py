from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Payer-system API"

    def ready(self) -> None:
        # Registers the bearer scheme with drf-spectacular (imported for its side effect).
        from api import schema  # noqa: F401
