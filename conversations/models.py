"""Conversations and their messages: one row per message, never a conversation-sized blob.

Every table of the app is here, as Django expects of one app: the fields, choices and
constraints of each, and no I/O; that is its one job, and why it is long."""

import secrets
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models

# Model ids are as long as servers make them: llama.cpp's server names a model by its file's
# path when it has no alias.
MODEL_ID_MAX_LENGTH = 400


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=MODEL_ID_MAX_LENGTH)
    system_prompt = models.TextField(blank=True)
    # Sampling parameters; null means "the model's default" and is not sent upstream.
    temperature = models.FloatField(null=True, blank=True)
    top_p = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    random_seed = models.PositiveIntegerField(null=True, blank=True)
    safe_prompt = models.BooleanField(default=False)

    class AnswerFormat(models.TextChoices):
        TEXT = "text", "Text"
        JSON = "json_object", "JSON"
        SCHEMA = "json_schema", "JSON matching a schema"

    # What the model is asked to answer in (conversations/live/json_answers.py); the schema
    # and its name are read only when the format is json_schema.
    answer_format = models.CharField(
        max_length=16, choices=AnswerFormat.choices, default=AnswerFormat.TEXT
    )
    answer_schema_name = models.CharField(max_length=64, blank=True)
    answer_schema = models.JSONField(null=True, blank=True)
    # A temporary chat: in no list, search or export, and deleted when the session it was
    # started in ends (at logout, else by `manage.py retention` once the session expired).
    temporary = models.BooleanField(default=False)
    session_key = models.CharField(max_length=40, blank=True)
    # The tools this conversation's answers may call, by key ("builtin:datetime",
    # "mcp:<server>/<tool>"; conversations/tools/catalog.py): the user switches each on.
    tools = models.JSONField(default=list, blank=True)
    # The last message of the branch the user chose to see (conversations/tree.py); None:
    # the branch of the newest message, which a question, regenerate or edit makes.
    shown_leaf = models.ForeignKey(
        "Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Pinned conversations lead the sidebar (newest pin first); archived ones leave it and
    # are still found by search. Times rather than flags: they order and say when.
    pinned_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class ReviewStatus(models.TextChoices):
        UNREVIEWED = "unreviewed"
        IN_REVIEW = "in_review", "In review"
        REVIEWED = "reviewed"
        ESCALATED = "escalated"

    # The admin's review workflow (conversations/review/admin.py); written only through
    # services.conversation_review_set, which leaves updated_at (the user's activity) alone.
    review_status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    review_notes = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]
        # Reviewers hold view_conversation and this; they never hold change or delete.
        permissions = [("review_conversation", "Can set review status and notes")]
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

    # What the settings dialog sets, and an export carries (docs/export.md).
    SETTINGS = (
        "model",
        "system_prompt",
        "temperature",
        "top_p",
        "max_tokens",
        "random_seed",
        "safe_prompt",
        "answer_format",
        "answer_schema_name",
        "answer_schema",
    )

    def settings(self) -> dict:
        return {name: getattr(self, name) for name in self.SETTINGS}


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
    # An answer's tool calls in order, when read with it (selectors.with_tool_calls).
    tool_call_list: list["ToolCall"] | None = None

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # The message this one follows: a conversation is a tree (conversations/tree.py). A
    # regenerated answer or an edited question is a sibling of the one it replaces; None
    # on the first question (and on a first question edited).
    parent = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="children"
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
    model = models.CharField(max_length=MODEL_ID_MAX_LENGTH, blank=True)  # the one that answered
    # For the reader, on an answer: why another model answered, which images were left out.
    notice = models.TextField(blank=True)
    # The channel of the process running this answer, while it runs with several processes:
    # where Stop and resync requests from a tab in another process are sent.
    worker = models.CharField(max_length=200, blank=True)
    # Stop was pressed in a tab served by another process. Stored as well as sent, so the
    # process running the answer stops at its next save even if the message was lost.
    stop_requested = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    # The server reported no usage: the tokens are our own count (Mistral's tokenizer).
    usage_estimated = models.BooleanField(default=False)
    # What the answer's call cost at the admin's prices when it ended ($0 on the local
    # model); None when its model has no price there, or no request was sent.
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
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


def _share_token() -> str:
    return secrets.token_urlsafe(32)


class Share(models.Model):
    """A read-only link to a snapshot of a conversation: the messages of the branch shown up
    to the one chosen, fixed when it was made (later messages, edits and branches are not
    in it). Anyone with the link reads it, no account needed, until its owner revokes it;
    it names its owner only if asked, and carries images and documents only if asked."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shares")
    token = models.CharField(max_length=64, unique=True, default=_share_token)
    title = models.CharField(max_length=200, blank=True)  # the conversation's, when shared
    message_ids = models.JSONField(default=list)  # the snapshot, first question first
    show_name = models.BooleanField(default=False)
    include_files = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"share of {self.conversation_id} #{self.pk}"


class SavedSchema(models.Model):
    """A JSON schema a user saved to pick again for a conversation's answer format."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_schemas"
    )
    name = models.CharField(max_length=64)
    schema = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="savedschema_owner_name")
        ]

    def __str__(self) -> str:
        return self.name


class ToolCall(models.Model):
    """One call an answer's model asked for, and its result: the assistant message's
    `tool_calls` entry and the `tool` message that answers it, as one row. An answer that
    used tools took several model calls ("steps"); its text is every step's text in order,
    and `text_offset` says where the text of the step that asked for this call ended.
    Earlier answers go back to the model as their text only."""

    class Status(models.TextChoices):
        WAITING = "waiting"  # for the user's approval
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"  # the tool answered with an error, or broke
        TIMED_OUT = "timed_out"
        REFUSED = "refused"  # the user did not approve it
        CANCELLED = "cancelled"  # Stop, or the answer ended before it ran
        UNKNOWN = "unknown"  # the model named a tool it was not given

    ACTIVE_STATUSES = (Status.WAITING, Status.RUNNING)

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tool_calls")
    step = models.PositiveSmallIntegerField()  # the model call that asked for it, from 1
    position = models.PositiveSmallIntegerField(default=0)  # within its step
    call_id = models.CharField(max_length=64)  # the model's id, sent back with the result
    name = models.CharField(max_length=64)  # the function name the model was given
    tool = models.CharField(max_length=200, blank=True)  # its key in the catalogue
    arguments = models.TextField(blank=True)  # as the model wrote them (JSON)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    result = models.TextField(blank=True)  # what went back to the model, capped
    text_offset = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["message", "step", "position"]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk} ({self.status})"


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


def _document_path(instance: "Document", filename: str) -> str:
    """Random names, as for attachments: served only through an access-checked view."""
    suffix = PurePosixPath(filename).suffix.lower()[:8]
    return f"documents/{secrets.token_urlsafe(18)}{suffix}"


class Document(models.Model):
    """A file a user attached for questions about it (PDF, DOCX, text, Markdown, CSV): the
    file as uploaded and, once ingested, its text page by page. Like an Attachment it belongs
    to its owner until a message is sent with it, then to that message."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        INGESTING = "ingesting"
        READY = "ready"
        FAILED = "failed"  # see error; its pages are gone

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents"
    )
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, null=True, blank=True, related_name="documents"
    )
    name = models.CharField(max_length=120)  # the file's name on the user's device
    file = models.FileField(upload_to=_document_path, max_length=200)
    mime = models.CharField(max_length=80)  # found from the content, not the name
    size = models.PositiveIntegerField()
    page_count = models.PositiveIntegerField(default=0)
    pages_done = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    tokens = models.PositiveIntegerField(default=0)  # of all pages' text, by the tokenizer
    position = models.PositiveSmallIntegerField(default=0)  # in its message, as attached
    created_at = models.DateTimeField(auto_now_add=True)
    # The job queue's bookkeeping (documents/jobs.py): the task that reads it, how many times a
    # worker began to, and the last sign of life of that worker (or of the enqueue), by which
    # a document a dead worker left is put back.
    task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position", "id"]
        indexes = [
            models.Index(fields=["owner", "message", "created_at"]),
            models.Index(fields=["status", "heartbeat_at"], name="document_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.name} #{self.pk}"


class DocumentPage(models.Model):
    """One page's text and how it was obtained. A DOCX or text file has no pages of its own:
    it is cut into pages of about the same length, so citations still point somewhere. A PDF
    page's picture is not stored: it is rendered from the PDF when a request or a reader
    needs it (documents.page_png)."""

    class Source(models.TextChoices):
        TEXT_LAYER = "text_layer", "text layer"
        OCR = "ocr", "OCR"
        PAGE_IMAGE = "page_image", "page image"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="pages")
    number = models.PositiveIntegerField()  # from 1
    text = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    tokens = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["document", "number"]
        constraints = [
            models.UniqueConstraint(fields=["document", "number"], name="document_page_once")
        ]

    def __str__(self) -> str:
        return f"{self.document_id} p. {self.number}"


class Report(models.Model):
    """A user's thumbs-down on an answer, with an optional reason; reported conversations
    come first in the review queue. One per user and answer: reporting again replaces the
    reason."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reports")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="report_once_per_user")
        ]

    def __str__(self) -> str:
        return f"Report on message #{self.message_id}"


class ReviewAudit(models.Model):
    """Who opened which conversation in the admin, and when: written on every view of a
    conversation page, never changed or deleted through the site."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    conversation_title = models.CharField(max_length=200, blank=True)  # outlives a deletion
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="review_audits"
    )
    opened_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        verbose_name = "review audit entry"
        verbose_name_plural = "review audit log"

    def __str__(self) -> str:
        return f"{self.staff_id} opened conversation {self.conversation_id}"


class ApiCall(models.Model):
    """One call to a model server, as billed: tokens from the API's `usage`, the model,
    latency and how it ended, and its cost at the price of the day (conversations/usage.py
    records it; prices changed later do not rewrite history)."""

    class Kind(models.TextChoices):
        CHAT = "chat"
        TITLE = "title"
        EMBEDDINGS = "embeddings"
        OCR = "ocr", "OCR"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    model = models.CharField(max_length=MODEL_ID_MAX_LENGTH)
    provider = models.CharField(max_length=32, default="mistral")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="api_calls",
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="api_calls"
    )
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="api_calls"
    )
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)  # counted by us, not reported
    pages = models.PositiveIntegerField(default=0)  # OCR is billed per page
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16)  # "complete", or how the call ended
    error_code = models.CharField(max_length=32, blank=True)
    # What the model received, with every image or document as its size, never its bytes.
    request = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API call"
        indexes = [models.Index(fields=["user", "created_at"], name="apicall_user_day_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.model} #{self.pk}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelPrice(models.Model):
    """The price of a model in US dollars. `model` is a model id or an id prefix
    ("mistral-large" prices "mistral-large-latest" and "mistral-large-2411"); the longest
    match wins. Models of the local provider (`local/...`) cost nothing whatever this says."""

    model = models.CharField(max_length=100, unique=True)
    input_usd_per_million = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    output_usd_per_million = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    usd_per_thousand_pages = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model


class Upload(models.Model):
    """A file a user sent to be checked, image or document, kept a day for the daily upload
    limits (conversations/limits.py). Written before the file is read, and kept whether it
    is then stored, refused or removed: the work of checking it was done all the same."""

    class Kind(models.TextChoices):
        IMAGE = "image"
        DOCUMENT = "document"
        IMPORT = "import"  # an export file brought in (conversations/imports.py)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    size = models.PositiveBigIntegerField()  # bytes, as received
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="upload_user_day_idx")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.size} bytes #{self.pk}"


def _invite_token() -> str:
    return secrets.token_urlsafe(24)


class Invite(models.Model):
    """A one-time sign-up link an administrator hands out: it works whatever CHAT_SIGNUP
    says, and the account it makes needs no approval (conversations/accounts.py)."""

    token = models.CharField(max_length=64, unique=True, default=_invite_token, editable=False)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.note or f"Invite #{self.pk}"


class SignupRequest(models.Model):
    """An account made while CHAT_SIGNUP is `approval`: its user is inactive, and cannot
    sign in, until an administrator approves it in the admin, which deletes this row."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="signup_request"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return str(self.user)
