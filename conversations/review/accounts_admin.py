"""Accounts in the admin: invitations (one-time sign-up links) and sign-ups awaiting
approval, approved through conversations/accounts.py."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from conversations.accounts import signups_approve
from conversations.models import Invite, SignupRequest


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["__str__", "link", "created_by", "created_at", "used_by", "used_at"]
    fields = ["note", "link", "created_by", "created_at", "used_by", "used_at"]
    readonly_fields = ["link", "created_by", "created_at", "used_by", "used_at"]

    @admin.display(description="Sign-up link (after the site's address)")
    def link(self, invite: Invite) -> str:
        if invite.pk is None:
            return "Save to make the link."
        if invite.used_at is not None:
            return "used"
        return format_html("<code>{}?invite={}</code>", reverse("signup"), invite.token)

    def save_model(self, request, obj: Invite, form, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(SignupRequest)
class SignupRequestAdmin(admin.ModelAdmin):
    list_display = ["user", "created_at"]
    actions = ["approve"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Approve the selected sign-ups", permissions=["delete"])
    def approve(self, request, queryset) -> None:
        count = signups_approve(requests=list(queryset))
        self.message_user(request, f"{count} account(s) approved.", messages.SUCCESS)
