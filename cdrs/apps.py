from django.apps import AppConfig


class CdrsConfig(AppConfig):
    name = "cdrs"
    verbose_name = "Call detail records"

    def ready(self) -> None:
        # The OpenAPI description of the views; the call totals kept on ORM writes of legs.
        from cdrs import schema, totals  # noqa: F401
