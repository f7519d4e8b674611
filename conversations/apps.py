from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # For their side effects: the model server and sign-up checks and the review panel's
        # admin classes register (checks.py, accounts.py, review/), and the session-end
        # receivers connect.
        from conversations import accounts, checks, signals  # noqa: F401
        from conversations.review import accounts_admin, admin, usage_admin  # noqa: F401
        from conversations.search import index_repair

        # SQLite drops a table's triggers when a migration rebuilds the table.
        post_migrate.connect(
            lambda using, **kwargs: index_repair(using=using),
            sender=self,
            weak=False,
            dispatch_uid="conversations.search_index_repair",
        )
