from django.apps import AppConfig


class CdrsConfig(AppConfig):
    name = "cdrs"
    verbose_name = "Call detail records"

    def ready(self) -> None:
        from cdrs import schema  # noqa: F401  (registers the OpenAPI description of the views)
