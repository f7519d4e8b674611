"""Conversations and their messages: one row per message, never a conversation-sized blob."""

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    # Sampling parameters; null means "the model's default" and is not sent upstream.
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    random_seed = models.PositiveIntegerField(null=True, blank=True)
    safe_prompt = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(temperature__isnull=True)
                | models.Q(temperature__gte=0, temperature__lte=1.5),
                name="conversation_temperature_range",
            ),
            models.CheckConstraint(
                condition=models.Q(top_p__isnull=True) | models.Q(top_p__gt=0, top_p__lte=1),
                name="conversation_top_p_range",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"  # created, waiting for the first token
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"  # a user pressed Stop; the text so far is kept
        FAILED = "failed"  # the model server refused or broke; see error_code
        INTERRUPTED = "interrupted"  # the stream was cut, or the process died mid-answer

    ACTIVE_STATUSES = (Status.PENDING, Status.STREAMING)

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField(blank=True)
    # The answer's markdown rendered and sanitized once, when it ended.
    html = models.TextField(blank=True)
    # Non-text content parts (attachments by reference, never base64), in order.
    parts = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error_code = models.CharField(max_length=32, blank=True)
    error_text = models.TextField(blank=True)
    model = models.CharField(max_length=100, blank=True)  # the model that actually answered
    # The channel of the process running this answer, while it runs with several processes:
    # where Stop and resync requests from a tab in another process are sent.
    worker = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"]),
            models.Index(fields=["status"], name="message_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES
