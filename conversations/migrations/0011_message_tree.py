"""A conversation becomes a tree: each message gets its parent, and the conversation the
branch it shows. Every conversation so far is one path, so each message's parent is the
message before it; `shown_leaf` stays empty, which means the newest message's branch.

One UPDATE with a correlated subquery on the (conversation, id) index, the same on SQLite
and PostgreSQL, instead of a Python loop over every row."""

import django.db.models.deletion
from django.db import migrations, models


def parents_from_order(apps, schema_editor):
    Message = apps.get_model("conversations", "Message")
    table = schema_editor.quote_name(Message._meta.db_table)
    schema_editor.execute(
        f"UPDATE {table} SET parent_id = (SELECT MAX(m.id) FROM {table} m"  # noqa: S608
        f" WHERE m.conversation_id = {table}.conversation_id AND m.id < {table}.id)"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0010_answer_cost"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="shown_leaf",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="conversations.message",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="conversations.message",
            ),
        ),
        migrations.RunPython(parents_from_order, migrations.RunPython.noop),
    ]
