from django.apps import AppConfig


class EnswitchConfig(AppConfig):
    name = "enswitch"

    def ready(self) -> None:
        from enswitch import db  # noqa: F401  (connects the SQLite set-up signal)
