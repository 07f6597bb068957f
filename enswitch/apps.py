from django.apps import AppConfig


class EnswitchConfig(AppConfig):
    name = "enswitch"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from enswitch import citus, db  # db connects the SQLite set-up signal

        db.create_private_sqlite_files()
        # On a Citus cluster, `migrate` also lays the tables out (enswitch/citus.py).
        post_migrate.connect(citus.lay_out_after_migrate, sender=self)
