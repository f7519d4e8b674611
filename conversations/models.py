"""Conversations and their messages: one row per message, never a conversation-sized blob."""

import secrets
from pathlib import PurePosixPath

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
    # A question's images in the order attached, when read with it (selectors.with_images);
    # None when they were not read.
    images: list["Attachment"] | None = None

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
    # For the reader, on an answer: why another model answered, which images were left out.
    notice = models.TextField(blank=True)
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


def _attachment_path(instance: "Attachment", filename: str) -> str:
    """A random name: files are never at a guessable path, and only a view that checks
    access serves them."""
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return f"attachments/{secrets.token_urlsafe(18)}{suffix}"


class Attachment(models.Model):
    """An image a user uploaded: the original as sent, and the copy made for the model.
    It belongs to its owner until a message is sent with it, then to that message."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="attachments"
    )
    name = models.CharField(max_length=120)  # the file's name on the user's device
    original = models.FileField(upload_to=_attachment_path, max_length=200)
    mime = models.CharField(max_length=40)  # found from the content, not the name
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sent = models.FileField(upload_to=_attachment_path, max_length=200)
    sent_mime = models.CharField(max_length=40)
    sent_width = models.PositiveIntegerField()
    sent_height = models.PositiveIntegerField()
    sent_bytes = models.PositiveIntegerField()
    tokens = models.PositiveIntegerField()  # the model's estimated image tokens
    position = models.PositiveSmallIntegerField(default=0)  # in its message, as attached
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["owner", "message", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"

    @property
    def sent_caption(self) -> str:
        """What the model was sent, under the thumbnail; static/js/attachments.js writes the
        same from a frame."""
        kb = max(1, round(self.sent_bytes / 1000))
        return f"sent as {self.sent_width}×{self.sent_height}, {kb:,} KB, ~{self.tokens:,} tokens"
