"""Share links: a read-only snapshot of a conversation anyone with the link may read.

A share holds the ids of the messages of the branch shown, from the first question to the
message chosen, fixed when it is made. Its page shows the stored sanitized HTML of the
answers and the questions as text; the owner's name only with `show_name`; images and
documents (names, pages) only with `include_files`, served through the link itself. A
revoked link, like an unknown one, is a 404; so is a file the snapshot does not hold.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from conversations.models import Attachment, Conversation, Document, Message, Share
from conversations.selectors import conversation_tree, with_images
from conversations.tree import shown_leaf


class ShareNotFound(Exception):
    """No such link, or a revoked one (the two look the same)."""


class NothingToShare(Exception):
    """The chosen message is not in the conversation, or there is no ended message yet."""


@transaction.atomic
def share_create(
    *,
    conversation: Conversation,
    message_id: int | None,
    show_name: bool,
    include_files: bool,
) -> Share:
    """A link to the branch shown up to `message_id` (None: its end). Messages still being
    written are left out: a snapshot holds what was said."""
    if conversation.temporary:
        raise NothingToShare("A temporary chat cannot be shared: it ends with your session.")
    tree = conversation_tree(conversation_id=conversation.pk)
    leaf = message_id if message_id is not None else shown_leaf(tree, conversation.shown_leaf_id)
    if leaf is None or leaf not in tree:
        raise NothingToShare("This message is not in the conversation.")
    path = tree.path_to(leaf)
    active = set(
        Message.objects.filter(pk__in=path, status__in=Message.ACTIVE_STATUSES).values_list(
            "pk", flat=True
        )
    )
    ids = [pk for pk in path if pk not in active]
    if not ids:
        raise NothingToShare("There is nothing to share yet.")
    return Share.objects.create(
        conversation=conversation,
        title=conversation.title,
        message_ids=ids,
        show_name=show_name,
        include_files=include_files,
    )


def share_revoke(*, share: Share) -> None:
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        share.save(update_fields=["revoked_at"])


def shares_of(*, user) -> list[Share]:
    """The user's links, newest first, revoked ones included (they say so)."""
    return list(Share.objects.filter(conversation__owner=user).select_related("conversation"))


def access_share(*, user, share_id: int) -> Share:
    """One of the user's own links."""
    try:
        return Share.objects.get(pk=share_id, conversation__owner=user)
    except (Share.DoesNotExist, ValueError, TypeError):
        raise ShareNotFound(share_id) from None


def share_by_token(token: str) -> Share:
    """A live link, for anyone who has it."""
    if not isinstance(token, str) or not 20 <= len(token) <= 64:
        raise ShareNotFound(token)
    share = (
        Share.objects.filter(token=token, revoked_at__isnull=True)
        .select_related("conversation__owner")
        .first()
    )
    if share is None:
        raise ShareNotFound(token)
    return share


@dataclass(frozen=True, slots=True)
class Snapshot:
    share: Share
    messages: list[Message]
    documents: dict[int, list[Document]]  # by question id, when files are included


def snapshot(share: Share) -> Snapshot:
    """The shared messages in order, with their images and documents when the owner
    included files."""
    by_id = {m.pk: m for m in Message.objects.filter(pk__in=share.message_ids)}
    messages = [by_id[pk] for pk in share.message_ids if pk in by_id]
    documents: dict[int, list[Document]] = defaultdict(list)
    if share.include_files:
        with_images(messages)
        for document in Document.objects.filter(message_id__in=list(by_id)).order_by(
            "message_id", "position", "id"
        ):
            documents[document.message_id].append(document)
    return Snapshot(share, messages, dict(documents))


def shared_attachment(share: Share, attachment_id: int) -> Attachment:
    """An image of the snapshot, when the owner included files."""
    if share.include_files:
        found = Attachment.objects.filter(
            pk=attachment_id, message_id__in=share.message_ids
        ).first()
        if found is not None:
            return found
    raise ShareNotFound(attachment_id)


def shared_document(share: Share, document_id: int) -> Document:
    """A document of the snapshot, when the owner included files."""
    if share.include_files:
        found = Document.objects.filter(
            pk=document_id, message_id__in=share.message_ids, status=Document.Status.READY
        ).first()
        if found is not None:
            return found
    raise ShareNotFound(document_id)
