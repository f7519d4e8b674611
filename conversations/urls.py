from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<int:pk>/", views.conversation_detail, name="conversation"),
    path("c/<int:pk>/rename/", views.rename, name="conversation_rename"),
    path("c/<int:pk>/delete/", views.delete, name="conversation_delete"),
    path("c/<int:pk>/settings/", views.conversation_settings, name="conversation_settings"),
    path("conversations/", views.sidebar_more, name="sidebar_more"),
    path("models.json", views.models_json, name="models_json"),
    path("attachments/", views.attachment_upload, name="attachment_upload"),
    path("attachments/<int:pk>/delete/", views.attachment_remove, name="attachment_remove"),
    path(
        "attachments/<int:pk>/<str:kind>/",
        views.attachment_file,
        name="attachment_file",
    ),
    path("accounts/signup/", views.signup, name="signup"),
]
