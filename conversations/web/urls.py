from django.urls import path, register_converter

from conversations.ids import IdConverter
from conversations.web import accounts, data, files, pages, shares, tools

register_converter(IdConverter, "id")

urlpatterns = [
    path("", pages.chat, name="chat"),
    path("c/<id:pk>/", pages.conversation_detail, name="conversation"),
    path("c/<id:pk>/earlier/", pages.thread_earlier, name="thread_earlier"),
    path("c/<id:pk>/thread/", pages.thread, name="thread"),
    path("c/<id:pk>/branch/", pages.branch, name="conversation_branch"),
    path("c/<id:pk>/fork/", pages.fork, name="conversation_fork"),
    path("c/<id:pk>/rename/", pages.rename, name="conversation_rename"),
    path("c/<id:pk>/delete/", pages.delete, name="conversation_delete"),
    path("c/<id:pk>/settings/", pages.conversation_settings, name="conversation_settings"),
    path("c/<id:pk>/pin/", pages.pin, name="conversation_pin"),
    path("c/<id:pk>/archive/", pages.archive, name="conversation_archive"),
    path("conversations/", pages.sidebar_more, name="sidebar_more"),
    path("c/<id:pk>/tools/", tools.conversation_tools, name="conversation_tools"),
    path("c/<id:pk>/share/", shares.share_new, name="share_new"),
    path("shares/", shares.shares_page, name="shares"),
    path("data/", data.data_page, name="data"),
    path("export/", data.export, name="export"),
    path("import/", data.import_view, name="import"),
    path("shares/<id:pk>/revoke/", shares.share_revoke_view, name="share_revoke"),
    path("s/<str:token>/", shares.shared, name="shared"),
    path("s/<str:token>/images/<id:pk>/", shares.shared_image, name="shared_image"),
    path(
        "s/<str:token>/documents/<id:pk>/pages/<id:number>/",
        shares.shared_page,
        name="shared_page",
    ),
    path("conversations/archived/", pages.archived, name="archived"),
    path("conversations/delete/", pages.delete_many, name="conversations_delete"),
    path("search/", pages.search, name="search"),
    path("models.json", pages.models_json, name="models_json"),
    path("tools.json", tools.tools_json, name="tools_json"),
    path("attachments/", files.attachment_upload, name="attachment_upload"),
    path("attachments/<id:pk>/delete/", files.attachment_remove, name="attachment_remove"),
    path(
        "attachments/<id:pk>/<str:kind>/",
        files.attachment_file,
        name="attachment_file",
    ),
    path("documents/", files.document_upload, name="document_upload"),
    path("documents/preview/", files.document_preview, name="document_preview"),
    path("documents/<id:pk>/", files.document_status, name="document_status"),
    path("documents/<id:pk>/delete/", files.document_remove, name="document_remove"),
    path("documents/<id:pk>/pages/<id:number>/", files.document_page, name="document_page"),
    path(
        "documents/<id:pk>/pages/<id:number>/image/",
        files.document_page_image,
        name="document_page_image",
    ),
    path("messages/<id:pk>/report/", pages.message_report, name="message_report"),
    path("schemas/<id:pk>/delete/", pages.saved_schema_delete, name="saved_schema_delete"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/delete/", accounts.account_delete_view, name="account_delete"),
]
