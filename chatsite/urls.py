"""The site's URLs. Static files are served by Django itself, also with DEBUG off: the site
runs as one plain daphne process, which (unlike `runserver`) serves no static files, and a
self-hosted chat has too little traffic to need a separate web server for them."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path

accounts = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
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
    path("admin/", admin.site.urls),
    path("accounts/", include(accounts)),
    path("", include("conversations.urls")),
    # From STATICFILES_DIRS and the apps' static folders through the finders; `insecure`
    # is what lets it run with DEBUG off. No collectstatic step is needed.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]
