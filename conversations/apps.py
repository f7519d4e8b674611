from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # For their side effects: the model server and sign-up checks and the review panel's
        # admin classes register (checks.py, accounts.py, review/), and the session-end
        # receivers connect.
        from conversations import accounts, checks, signals  # noqa: F401
        from conversations.review import accounts_admin, admin, usage_admin  # noqa: F401
