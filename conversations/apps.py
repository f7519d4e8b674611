from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # For their side effects: the model server checks register (conversations/checks.py)
        # and the session-end receivers connect.
        from . import checks, signals  # noqa: F401
