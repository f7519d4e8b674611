from django.urls import path

from . import views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<int:pk>/", views.conversation_detail, name="conversation"),
    path("c/<int:pk>/earlier/", views.thread_earlier, name="thread_earlier"),
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
    path("documents/", views.document_upload, name="document_upload"),
    path("documents/preview/", views.document_preview, name="document_preview"),
    path("documents/<int:pk>/", views.document_status, name="document_status"),
    path("documents/<int:pk>/delete/", views.document_remove, name="document_remove"),
    path("documents/<int:pk>/pages/<int:number>/", views.document_page, name="document_page"),
    path(
        "documents/<int:pk>/pages/<int:number>/image/",
        views.document_page_image,
        name="document_page_image",
    ),
    path("messages/<int:pk>/report/", views.message_report, name="message_report"),
    path("accounts/signup/", views.signup, name="signup"),
]
