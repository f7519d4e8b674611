"""Review and usage (issue #9): review fields on conversations, reports, the review audit
log, API calls with their cost, and the model price table; seeded with Mistral's published
prices and a "Reviewer" group that may view conversations and set their review, nothing else."""

from decimal import Decimal

import django.db.models.deletion
from django.apps import apps as global_apps
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

# Mistral's published prices in US dollars (mistral.ai/pricing), per million input and output
# tokens, and per thousand pages for OCR. A row prices every model id it prefixes up to a
# dash; admins correct them in the admin. The local model is free in code, not here.
PRICES = [
    ("mistral-large", "2", "6", "0"),
    ("mistral-medium", "0.4", "2", "0"),
    ("mistral-small", "0.2", "0.6", "0"),
    ("pixtral-large", "2", "6", "0"),
    ("pixtral-12b", "0.15", "0.15", "0"),
    ("ministral-8b", "0.1", "0.1", "0"),
    ("ministral-3b", "0.04", "0.04", "0"),
    ("codestral", "0.3", "0.9", "0"),
    ("open-mistral-nemo", "0.15", "0.15", "0"),
    ("mistral-embed", "0.1", "0", "0"),
    ("mistral-ocr", "0", "0", "1"),
]
REVIEWER_PERMISSIONS = ["view_conversation", "review_conversation"]


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("conversations", "ModelPrice")
    for model, price_in, price_out, per_pages in PRICES:
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={
                "input_usd_per_million": Decimal(price_in),
                "output_usd_per_million": Decimal(price_out),
                "usd_per_thousand_pages": Decimal(per_pages),
            },
        )
    # Permissions are made after all migrations ran; the group needs them now.
    app_config = global_apps.get_app_config("conversations")
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Reviewer")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="conversations", codename__in=REVIEWER_PERMISSIONS
        )
    )


def unseed(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Reviewer").delete()
    apps.get_model("conversations", "ModelPrice").objects.filter(
        model__in=[row[0] for row in PRICES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0003_documents"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ModelPrice",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=100, unique=True)),
                (
                    "input_usd_per_million",
                    models.DecimalField(decimal_places=4, default=0, max_digits=10),
                ),
                (
                    "output_usd_per_million",
                    models.DecimalField(decimal_places=4, default=0, max_digits=10),
                ),
                (
                    "usd_per_thousand_pages",
                    models.DecimalField(decimal_places=4, default=0, max_digits=10),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["model"],
            },
        ),
        migrations.AlterModelOptions(
            name="conversation",
            options={
                "ordering": ["-updated_at", "-id"],
                "permissions": [("review_conversation", "Can set review status and notes")],
            },
        ),
        migrations.AddField(
            model_name="conversation",
            name="review_notes",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="review_status",
            field=models.CharField(
                choices=[
                    ("unreviewed", "Unreviewed"),
                    ("in_review", "In review"),
                    ("reviewed", "Reviewed"),
                    ("escalated", "Escalated"),
                ],
                default="unreviewed",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="conversation",
            name="reviewed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="conversation",
            name="reviewed_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.CreateModel(
            name="ReviewAudit",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("conversation_title", models.CharField(blank=True, max_length=200)),
                ("opened_at", models.DateTimeField(auto_now_add=True)),
                (
                    "conversation",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="conversations.conversation",
                    ),
                ),
                (
                    "staff",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="review_audits",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "review audit entry",
                "verbose_name_plural": "review audit log",
                "ordering": ["-opened_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="ApiCall",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("chat", "Chat"),
                            ("title", "Title"),
                            ("embeddings", "Embeddings"),
                            ("ocr", "OCR"),
                        ],
                        max_length=16,
                    ),
                ),
                ("model", models.CharField(max_length=100)),
                ("provider", models.CharField(default="mistral", max_length=32)),
                ("prompt_tokens", models.PositiveIntegerField(default=0)),
                ("completion_tokens", models.PositiveIntegerField(default=0)),
                ("pages", models.PositiveIntegerField(default=0)),
                ("cost_usd", models.DecimalField(decimal_places=8, default=0, max_digits=14)),
                ("latency_ms", models.PositiveIntegerField(blank=True, null=True)),
                ("status", models.CharField(max_length=16)),
                ("error_code", models.CharField(blank=True, max_length=32)),
                ("request", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                (
                    "conversation",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="api_calls",
                        to="conversations.conversation",
                    ),
                ),
                (
                    "message",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="api_calls",
                        to="conversations.message",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="api_calls",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "API call",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(fields=["user", "created_at"], name="apicall_user_day_idx")
                ],
            },
        ),
        migrations.CreateModel(
            name="Report",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("reason", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "message",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="reports",
                        to="conversations.message",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="reports",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "constraints": [
                    models.UniqueConstraint(fields=("message", "user"), name="report_once_per_user")
                ],
            },
        ),
        migrations.RunPython(seed, unseed),
    ]
