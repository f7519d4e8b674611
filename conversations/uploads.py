"""Files users upload, stored: an accepted image (its original and the copy the model gets)
or document, then its row, with nothing left half-stored when a step fails; and unsent ones
removed when the user takes them out of the composer, or a day after a tab was closed."""

from datetime import timedelta

from django.core.files.base import ContentFile
from django.utils import timezone

from conversations.documents.reading import PreparedDocument
from conversations.images import PreparedImage
from conversations.limits import DAY
from conversations.models import Attachment, Document, Upload

# Uploaded and never sent (the tab was closed): deleted at the owner's next upload.
UNSENT_ATTACHMENT_LIFETIME = timedelta(days=1)


def upload_record(*, user, kind: str, size: int) -> Upload:
    """Count a file a user sent against the daily upload limits, before it is read (a file
    refused by its checks cost the reading all the same); the user's rows older than the
    day they count for are deleted meanwhile."""
    now = timezone.now()
    Upload.objects.filter(user=user, created_at__lt=now - DAY).delete()
    return Upload.objects.create(user=user, kind=kind, size=size)


def attachment_create(*, owner, image: PreparedImage) -> Attachment:
    """Store an accepted image: both files, then the row. If any step fails, the files
    already written are removed, so nothing is left half-stored. Also deletes the owner's
    attachments left unsent for a day (a tab closed before sending)."""
    stale = Attachment.objects.filter(
        owner=owner,
        message__isnull=True,
        created_at__lt=timezone.now() - UNSENT_ATTACHMENT_LIFETIME,
    )
    for old in stale:
        old.delete()  # the post_delete receiver removes its files
    attachment = Attachment(
        owner=owner,
        name=image.name,
        mime=image.mime,
        width=image.width,
        height=image.height,
        sent_mime=image.sent_mime,
        sent_width=image.sent_width,
        sent_height=image.sent_height,
        sent_bytes=len(image.sent),
        tokens=image.tokens,
    )
    extension = {"image/png": ".png", "image/jpeg": ".jpg"}[image.sent_mime]
    original_extension = "." + image.mime.split("/")[1]
    try:
        attachment.original.save(
            "original" + original_extension, ContentFile(image.original), save=False
        )
        attachment.sent.save("sent" + extension, ContentFile(image.sent), save=False)
        attachment.save()
    except BaseException:
        for field in (attachment.original, attachment.sent):
            if field.name:
                field.storage.delete(field.name)
        raise
    return attachment


def document_create(*, owner, document: PreparedDocument) -> Document:
    """Store an accepted document's file, then its row, queued to be read; if either step
    fails the file is removed, so nothing is left half-stored. Also deletes the owner's
    documents left unsent for a day."""
    stale = Document.objects.filter(
        owner=owner,
        message__isnull=True,
        created_at__lt=timezone.now() - UNSENT_ATTACHMENT_LIFETIME,
    )
    for old in stale:
        old.delete()  # the post_delete receiver removes its file
    row = Document(
        owner=owner,
        name=document.name,
        mime=document.mime,
        size=len(document.data),
        page_count=document.page_count,
    )
    extension = {
        "application/pdf": ".pdf",
        "text/csv": ".csv",
        "text/markdown": ".md",
        "text/plain": ".txt",
    }.get(document.mime, ".docx")
    try:
        row.file.save("document" + extension, ContentFile(document.data), save=False)
        row.save()
    except BaseException:
        if row.file.name:
            row.file.storage.delete(row.file.name)
        raise
    return row


def document_delete(*, document: Document) -> None:
    """Remove an unsent document (taken out of the composer); sent ones stay."""
    if document.message_id is None:
        document.delete()


def attachment_delete(*, attachment: Attachment) -> None:
    """Remove an unsent attachment (the user took it out of the composer); sent ones stay
    with their message."""
    if attachment.message_id is None:
        attachment.delete()
