"""The site's URLs. Static files are not among them: servestatic's middleware serves them
(chatsite/settings.py), also with DEBUG off, since the site runs as one plain daphne process,
which (unlike `runserver`) serves no static files, and a self-hosted chat has too little
traffic to need a separate web server for them."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from conversations.live.draining import draining
from conversations.web.forms import LoginForm
from conversations.web.health import health_view

accounts = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=LoginForm
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
]

urlpatterns = [
    # For the load balancer and monitoring (docs/deploy.md); 503 from SIGTERM on, while this
    # process drains (conversations/live/shutdown.py).
    path("health", health_view(draining=draining), name="health"),
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("", include("conversations.web.urls")),
]
