"""`manage.py retention`: delete the temporary chats whose session ended, and conversations
inactive for longer than CHAT_RETENTION_DAYS (conversations/retention.py); run it daily
from cron or a systemd timer (docs/deploy.md)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from conversations.retention import retention_sweep, temporary_sweep


class Command(BaseCommand):
    help = "Delete conversations inactive for longer than CHAT_RETENTION_DAYS."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--days", type=int, help="this many days instead of CHAT_RETENTION_DAYS"
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be deleted, delete nothing"
        )

    def handle(self, *args: Any, days: int | None, dry_run: bool, **options: Any) -> None:
        days = settings.CHAT_RETENTION_DAYS if days is None else days
        if not dry_run:
            ended = temporary_sweep(now=timezone.now())
            self.stdout.write(
                f"Deleted {ended} temporary chat{'s' if ended != 1 else ''} whose session ended."
            )
        if not days:
            self.stdout.write("CHAT_RETENTION_DAYS is 0: conversations are kept for ever.")
            return
        if days < 1:
            raise CommandError("--days must be 1 or more.")
        sweep = retention_sweep(days=days, now=timezone.now(), dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {sweep.deleted} conversation{'s' if sweep.deleted != 1 else ''} inactive "
            f"for more than {days} days; kept {sweep.kept_for_review} waiting for a reviewer."
        )
