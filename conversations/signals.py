"""A user's open sockets close (code 4401) the moment their session ends: logout, a new
password, deactivation, the account deleted. Each case calls
`broadcast.user_sessions_end_sync` after commit. A logout also ends the session's temporary
chats, and a row's files go with it."""

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from conversations.documents.ranking import derived_file_names
from conversations.live import broadcast
from conversations.models import Attachment, Conversation, Document

User = get_user_model()

# The fields whose change ends a user's sessions.
_WATCHED = ("password", "is_active")


@receiver(user_logged_out, dispatch_uid="conversations.sessions_end_on_logout")
def sessions_end_on_logout(sender, request, user, **kwargs) -> None:
    if user is not None and user.pk is not None:
        broadcast.user_sessions_end_sync(user.pk)


@receiver(user_logged_out, dispatch_uid="conversations.temporary_chats_end_on_logout")
def temporary_chats_end_on_logout(sender, request, user, **kwargs) -> None:
    """The session's temporary chats end with it (their files with them, on commit)."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and user.pk is not None and key:
        Conversation.objects.filter(owner_id=user.pk, temporary=True, session_key=key).delete()


@receiver(pre_save, sender=User, dispatch_uid="conversations.remember_session_fields")
def remember_session_fields(sender, instance, update_fields=None, **kwargs) -> None:
    """Keep the stored password hash and active flag, to compare after the save. Saves
    that name other fields only (`last_login` at each login) cost no query."""
    instance._session_fields_before = None
    if instance.pk is None or (update_fields is not None and not set(_WATCHED) & update_fields):
        return
    instance._session_fields_before = (
        User.objects.filter(pk=instance.pk).values_list(*_WATCHED).first()
    )


@receiver(post_delete, sender=User, dispatch_uid="conversations.sessions_end_on_delete")
def sessions_end_on_delete(sender, instance, **kwargs) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: broadcast.user_sessions_end_sync(user_id))


@receiver(post_save, sender=User, dispatch_uid="conversations.sessions_end_on_change")
def sessions_end_on_change(sender, instance, created, **kwargs) -> None:
    before = getattr(instance, "_session_fields_before", None)
    instance._session_fields_before = None
    if created or before is None:
        return
    password, was_active = before
    if instance.password != password or (was_active and not instance.is_active):
        user_id = instance.pk
        transaction.on_commit(lambda: broadcast.user_sessions_end_sync(user_id))


@receiver(post_delete, sender=Attachment, dispatch_uid="conversations.attachment_files_delete")
def attachment_files_delete(sender, instance, **kwargs) -> None:
    """An attachment's files go with its row, however it was deleted (with its conversation,
    its user, or taken out of the composer), once the deletion is committed, unless another
    row still names them (an edited question or a fork shares its images' files)."""
    names = [f.name for f in (instance.original, instance.sent) if f.name]
    storage = instance.original.storage

    def delete() -> None:
        for name in names:
            if not Attachment.objects.filter(Q(original=name) | Q(sent=name)).exists():
                storage.delete(name)

    transaction.on_commit(delete)


@receiver(post_delete, sender=Document, dispatch_uid="conversations.document_file_delete")
def document_file_delete(sender, instance, **kwargs) -> None:
    """A document's file (and what retrieval stored beside it) goes with its row, however
    it was deleted, once committed, unless another row still names it (a fork's copy
    shares the file)."""
    if instance.file.name:
        name, storage = instance.file.name, instance.file.storage

        def delete() -> None:
            if not Document.objects.filter(file=name).exists():
                for each in [name, *derived_file_names(name)]:
                    storage.delete(each)

        transaction.on_commit(delete)
