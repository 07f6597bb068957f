from django.apps import AppConfig


class EnswitchConfig(AppConfig):
    name = "enswitch"

    def ready(self) -> None:
        from enswitch import db  # connects the SQLite set-up signal

        db.create_private_sqlite_files()
