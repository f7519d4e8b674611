"""Pinned and archived conversations, and the full-text index of titles and messages
(conversations/search.py): FTS5 tables and triggers on SQLite, a tsvector column with its
trigger and GIN indexes on PostgreSQL. Existing rows are indexed here; reversible.

Not atomic, so that on PostgreSQL the existing messages are indexed a batch per transaction
and the GIN indexes built CONCURRENTLY, with the site serving meanwhile. The index comes
first and every step of it can run again, so a run cut short there is finished by the next
`migrate`."""

from django.db import migrations, models


def index_install(apps, schema_editor):
    from conversations.search import index_install

    index_install(schema_editor)


def index_remove(apps, schema_editor):
    from conversations.search import index_remove

    index_remove(schema_editor)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("conversations", "0016_upload_import"),
    ]

    operations = [
        migrations.RunPython(index_install, index_remove),
        migrations.AddField(
            model_name="conversation",
            name="archived_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="pinned_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
