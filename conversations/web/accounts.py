"""Accounts: sign-up (open, closed or by approval, or with an invitation:
conversations/accounts.py), deleting one's own account, and the page a login throttled by
django-axes gets."""

import logging

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from conversations.accounts import SignupClosed, account_create, check_signup_allowed
from conversations.services import AccountNotDeletable, account_delete
from conversations.web.forms import AccountDeleteForm, SignupForm

logger = logging.getLogger(__name__)

# The backend a new account is signed in with: the model backend, not django-axes's, which
# only refuses (chatsite/settings.py).
_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """The form, unless sign-up is closed and no valid invitation (`?invite=`) comes with
    it; an account awaiting approval gets a page saying so instead of a session."""
    if request.user.is_authenticated:
        return redirect("chat")
    invite = request.POST.get("invite") or request.GET.get("invite", "")
    try:
        check_signup_allowed(invite_token=invite)
    except SignupClosed as closed:
        return _closed(request, closed)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = account_create(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                invite_token=invite,
            )
        except SignupClosed as closed:
            return _closed(request, closed)
        if not user.is_active:
            return render(request, "registration/signup_pending.html", {"username": user})
        login(request, user, backend=_MODEL_BACKEND)
        return redirect("chat")
    return render(request, "registration/signup.html", {"form": form, "invite": invite})


@login_required
@require_http_methods(["GET", "POST"])
def account_delete_view(request: HttpRequest) -> HttpResponse:
    """Delete one's own account and everything in it, after typing the password again: a
    session left open on a shared computer must not be enough. Every socket and session of
    the account ends with it."""
    form = AccountDeleteForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            account_delete(user=request.user)
        except AccountNotDeletable as refused:
            form.add_error(None, refused.message)
        else:
            logout(request)
            return render(request, "registration/account_deleted.html")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/account_delete.html", {"form": form}, status=status)


def _closed(request: HttpRequest, closed: SignupClosed) -> HttpResponse:
    return render(request, "registration/signup_closed.html", {"reason": str(closed)}, status=403)


def login_locked_out(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """django-axes's lockout answer (AXES_LOCKOUT_CALLABLE), for the site's login and the
    admin's: a page saying why and for how long, with 429, instead of a bare sentence. Axes
    calls it with its credentials in varying positions; the username is read from the form."""
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {"username": request.POST.get("username", ""), "minutes": minutes}
    logger.warning(
        "Login locked out for %d min: username %r from %s",
        minutes,
        context["username"][:150],
        request.META.get("REMOTE_ADDR", "?"),
    )
    return render(request, "registration/locked_out.html", context, status=429)
