"""Accounts: sign-up, and the page a login throttled by django-axes gets."""

from django.conf import settings
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from conversations.web.forms import SignupForm

# The backend a new account is signed in with: the model backend, not django-axes's, which
# only refuses (chatsite/settings.py).
_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("chat")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend=_MODEL_BACKEND)
        return redirect("chat")
    return render(request, "registration/signup.html", {"form": form})


def login_locked_out(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """django-axes's lockout answer (AXES_LOCKOUT_CALLABLE), for the site's login and the
    admin's: a page saying why and for how long, with 429, instead of a bare sentence. Axes
    calls it with its credentials in varying positions; the username is read from the form."""
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {"username": request.POST.get("username", ""), "minutes": minutes}
    return render(request, "registration/locked_out.html", context, status=429)
