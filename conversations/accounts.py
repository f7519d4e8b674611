"""Who may make an account: sign-up open to anyone, closed, or open pending an
administrator's approval (CHAT_SIGNUP), and one-time invitations that work in every mode.

An account awaiting approval is a user with `is_active` off and a `SignupRequest` row:
Django then refuses its logins and sessions everywhere (pages, sockets, the admin) with no
check of our own, and the row tells it apart from an account an administrator deactivated.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import transaction
from django.utils import timezone

from conversations.models import Invite, SignupRequest

OPEN, CLOSED, APPROVAL = "open", "closed", "approval"
SIGNUP_MODES = (OPEN, CLOSED, APPROVAL)


class SignupClosed(Exception):
    """No account can be made here without a (valid) invitation; the message says which."""


def signup_mode() -> str:
    return settings.CHAT_SIGNUP


def invite_usable(token: str) -> Invite | None:
    """The unused invitation with this token, if any."""
    if not token:
        return None
    return Invite.objects.filter(token=token, used_at__isnull=True).first()


def check_signup_allowed(*, invite_token: str) -> None:
    """Raise SignupClosed unless the sign-up form may be shown and posted."""
    if invite_token:
        if invite_usable(invite_token) is None:
            raise SignupClosed(
                "This invitation has already been used or was withdrawn. Ask for a new one."
            )
    elif signup_mode() == CLOSED:
        raise SignupClosed(
            "Sign-up is closed on this site. Ask an administrator for an invitation."
        )


@transaction.atomic
def account_create(*, username: str, password: str, invite_token: str = ""):
    """Make the account, validated by the caller's form; returns the user, active unless it
    awaits approval. An invitation is taken in the same transaction, so two people cannot
    use one: the second gets SignupClosed and no account."""
    check_signup_allowed(invite_token=invite_token)
    approval = not invite_token and signup_mode() == APPROVAL
    user = get_user_model().objects.create_user(
        username=username, password=password, is_active=not approval
    )
    if invite_token:
        taken = Invite.objects.filter(token=invite_token, used_at__isnull=True).update(
            used_by=user, used_at=timezone.now()
        )
        if taken != 1:
            raise SignupClosed("This invitation has just been used. Ask for a new one.")
    elif approval:
        SignupRequest.objects.create(user=user)
    return user


def signups_approve(*, requests) -> int:
    """Activate the accounts of these sign-up requests and delete the requests; how many."""
    user_ids = [r.user_id for r in requests]
    with transaction.atomic():
        get_user_model().objects.filter(pk__in=user_ids).update(is_active=True)
        SignupRequest.objects.filter(user_id__in=user_ids).delete()
    return len(user_ids)


def awaiting_approval(*, username: str, password: str) -> bool:
    """Whether these credentials are those of an account still awaiting approval (so the
    login page can say so instead of "wrong password")."""
    user = (
        get_user_model()
        .objects.filter(username=username, is_active=False, signup_request__isnull=False)
        .first()
    )
    return user is not None and user.check_password(password)


@register("signup")
def check_signup_mode(app_configs=None, **kwargs) -> list[CheckMessage]:
    if signup_mode() in SIGNUP_MODES:
        return []
    return [
        Error(
            f"CHAT_SIGNUP is {signup_mode()!r}.",
            hint="Set it to open, closed or approval.",
            id="conversations.E020",
        )
    ]


@register("signup", deploy=True)
def check_signup_open(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Open sign-up suits a laptop or a trusted network, not a public address: anyone who
    finds the site gets an account and spends its model budget."""
    if signup_mode() != OPEN:
        return []
    return [
        Warning(
            "CHAT_SIGNUP is open: anyone who reaches the site can make an account.",
            hint="Set CHAT_SIGNUP=approval (accounts wait for an administrator) or closed "
            "(invitations from the admin only).",
            id="conversations.W020",
        )
    ]
