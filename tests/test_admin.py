"""The review panel: who may see and change what, the audit trail, the transcript as the
user saw it, the list's filters, search, order and exports, and the usage page."""

import csv
import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.images import prepare_image
from conversations.models import (
    ApiCall,
    Conversation,
    Document,
    Message,
    ModelPrice,
    Report,
    ReviewAudit,
)
from conversations.review.admin import ConversationAdmin
from conversations.uploads import attachment_create
from conversations.usage import request_summary
from tests import imagefiles
from tests.helpers import message_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("review_seed")]

LIST = reverse("admin:conversations_conversation_changelist")


def change_url(conversation) -> str:
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def reviewer(django_user_model):
    user = django_user_model.objects.create_user(
        username="rita", password="pw-for-tests-3", is_staff=True
    )
    user.groups.add(Group.objects.get(name="Reviewer"))
    return user


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="pw-root-1")


def as_user(client, user):
    client.force_login(user)
    return client


def exchange(owner, *, title="Chat", question="Hello", answer="Hi **there**", **answer_fields):
    conversation = Conversation.objects.create(owner=owner, model="mistral-small-latest")
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    conversation.refresh_from_db()
    message_create(conversation=conversation, role="user", text=question)
    fields = {"status": "complete", "model": "mistral-small-latest", **answer_fields}
    reply = message_create(conversation=conversation, role="assistant", text=answer, **fields)
    return conversation, reply


def listed(response) -> list[int]:
    return [row.pk for row in response.context["cl"].result_list]


# Who may do what


def test_reviewer_group_may_view_and_review_conversations_and_nothing_else():
    codenames = set(
        Group.objects.get(name="Reviewer").permissions.values_list("codename", flat=True)
    )
    assert codenames == {"view_conversation", "review_conversation"}


def test_plain_user_cannot_reach_the_admin(client, user):
    conversation, _ = exchange(user)
    as_user(client, user)
    for url in ("/admin/", LIST, change_url(conversation)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert not ReviewAudit.objects.exists()


def test_reviewer_cannot_change_a_transcript_only_its_review(client, user, reviewer):
    conversation, reply = exchange(user, title="Original")
    updated_at = conversation.updated_at
    as_user(client, reviewer)
    response = client.post(
        change_url(conversation),
        {
            "review_status": "escalated",
            "review_notes": "Made up a citation.",
            "title": "Changed",
            "model": "evil",
            "owner": reviewer.pk,
        },
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    reply.refresh_from_db()
    assert (conversation.review_status, conversation.review_notes) == (
        "escalated",
        "Made up a citation.",
    )
    assert (conversation.reviewed_by, conversation.title, conversation.model) == (
        reviewer,
        "Original",
        "mistral-small-latest",
    )
    assert conversation.owner == user
    assert conversation.updated_at == updated_at  # the user's last activity is unchanged
    assert reply.text == "Hi **there**"


def test_reviewer_cannot_delete_a_conversation(client, user, reviewer):
    conversation, _ = exchange(user)
    as_user(client, reviewer)
    delete = reverse("admin:conversations_conversation_delete", args=[conversation.pk])
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    client.post(
        LIST, {"action": "delete_selected", "_selected_action": [conversation.pk], "post": "yes"}
    )
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    actions = client.get(LIST).context["action_form"].fields["action"].choices
    assert "delete_selected" not in [name for name, _ in actions]


def test_reviewer_cannot_open_message_prices_usage_or_the_audit_log(client, reviewer):
    as_user(client, reviewer)
    for url in (
        reverse("admin:conversations_modelprice_changelist"),
        reverse("admin:conversations_apicall_changelist"),
        reverse("admin:conversations_usage"),
        reverse("admin:conversations_reviewaudit_changelist"),
        reverse("admin:auth_user_changelist"),
    ):
        assert client.get(url).status_code == 403, url


def test_reviewer_sees_images_only_through_the_admin(client, user, reviewer, django_user_model):
    conversation, _ = exchange(user)
    question = conversation.messages.get(role="user")
    image = prepare_image(name="receipt.jpg", data=imagefiles.jpeg(), max_side=1540)
    attachment = attachment_create(owner=user, image=image)
    attachment.message = question
    attachment.save()
    sent = reverse("attachment_file", args=[attachment.pk, "sent"])

    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert f'src="{sent}"' in page
    assert "receipt.jpg: 640×480, sent as 640×480" in page
    image_response = client.get(sent)
    assert image_response.status_code == 200
    assert b"".join(image_response.streaming_content).startswith(b"\xff\xd8")  # a JPEG
    # The user's own chat page stays theirs.
    assert client.get(reverse("conversation", args=[conversation.pk])).status_code == 404

    staff_without_review = django_user_model.objects.create_user(
        username="sam", password="pw-for-tests-4", is_staff=True
    )
    as_user(client, staff_without_review)
    assert client.get(sent).status_code == 404


# Audit


def test_each_opening_of_a_conversation_is_audited(client, user, reviewer):
    conversation, _ = exchange(user, title="Secrets")
    as_user(client, reviewer)
    client.get(change_url(conversation))
    client.get(change_url(conversation))
    client.get(LIST)  # the list shows no transcript: not an opening
    rows = list(ReviewAudit.objects.all())
    assert [(r.staff, r.conversation, r.conversation_title) for r in rows] == [
        (reviewer, conversation, "Secrets")
    ] * 2


def test_audit_log_is_for_superusers_to_read_and_nobody_to_edit(client, user, admin_user):
    conversation, _ = exchange(user)
    as_user(client, admin_user)
    client.get(change_url(conversation))
    entry = ReviewAudit.objects.get()
    assert client.get(reverse("admin:conversations_reviewaudit_changelist")).status_code == 200
    detail = reverse("admin:conversations_reviewaudit_change", args=[entry.pk])
    assert client.get(detail).status_code == 200
    assert client.post(detail, {"conversation_title": "x"}).status_code == 403
    assert client.get(reverse("admin:conversations_reviewaudit_add")).status_code == 403
    delete = reverse("admin:conversations_reviewaudit_delete", args=[entry.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.conversation_title == "Chat"


# The transcript


def test_transcript_shows_sanitized_html_never_raw_model_text(client, user, reviewer):
    conversation, reply = exchange(
        user,
        question="<b>not bold</b>",
        answer="Look: <script>alert(1)</script> and **bold**",
        html="",  # as if a restart cut it before the ending was stored
    )
    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<strong>bold</strong>" in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page


def test_transcript_says_when_an_answers_tokens_are_our_estimate(client, user, reviewer):
    conversation, reply = exchange(
        user, html="<p>Hi</p>", prompt_tokens=40, completion_tokens=9, usage_estimated=True
    )
    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert "40 in · 9 out (estimated: the server reported none)" in page


def test_transcript_shows_per_answer_cost_request_and_reports(client, user, reviewer):
    conversation, reply = exchange(
        user,
        html="<p>Hi</p>",
        prompt_tokens=1200,
        completion_tokens=300,
        duration_ms=840,
        time_to_first_token_ms=210,
    )
    ApiCall.objects.create(
        kind="chat",
        model="mistral-small-latest",
        status="complete",
        user=user,
        conversation=conversation,
        message=reply,
        prompt_tokens=1200,
        completion_tokens=300,
        cost_usd=Decimal("0.00042"),
        request={
            "model": "mistral-small-latest",
            "messages": [
                {
                    "role": "user",
                    "parts": [
                        {"type": "text", "chars": 5},
                        {"type": "image_url", "mime": "image/jpeg", "bytes": 120_000},
                    ],
                }
            ],
        },
    )
    Report.objects.create(message=reply, user=user, reason="Wrong year")
    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert "1200 in · 300 out" in page
    assert "$0.000420" in page
    assert "first token 210 ms · 840 ms in all" in page
    assert "1 message to mistral-small-latest" in page
    assert "image image/jpeg, 117.2\xa0KB" in page
    assert "Reported by ada" in page and "Wrong year" in page


def test_transcript_names_documents_with_their_pages(client, user, reviewer):
    conversation, _ = exchange(user)
    Document.objects.create(
        owner=user,
        message=conversation.messages.get(role="user"),
        name="thesis.pdf",
        file="documents/t.pdf",
        mime="application/pdf",
        size=2_000_000,
        page_count=42,
        tokens=30_000,
        status="ready",
    )
    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert "thesis.pdf: 42 pages, application/pdf, 1.9\xa0MB, ~30000 tokens" in page


def branched(owner):
    """A conversation with a regenerated answer and an edited follow-up, each with its own
    continuation, whose user switched back to the first follow-up."""
    conversation, first_answer = exchange(owner, question="Hello", answer="First answer")
    question = first_answer.parent
    second = message_create(
        conversation=conversation, role="assistant", text="Second answer", parent=question
    )
    follow_up = message_create(conversation=conversation, role="user", text="Follow-up")
    kept = message_create(conversation=conversation, role="assistant", text="Kept answer")
    edited = message_create(
        conversation=conversation, role="user", text="Edited follow-up", parent=second
    )
    message_create(conversation=conversation, role="assistant", text="Answer to the edit")
    Conversation.objects.filter(pk=conversation.pk).update(shown_leaf=kept)
    return conversation, {
        "question": question,
        "first": first_answer,
        "second": second,
        "follow_up": follow_up,
        "kept": kept,
        "edited": edited,
    }


def test_transcript_shows_every_branch_and_marks_the_one_shown(client, user, reviewer):
    conversation, m = branched(user)
    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    # The shown branch in order, then the other branches, each from where it forks.
    order = [
        "Hello",
        "Second answer",
        "Follow-up",
        "Kept answer",
        "First answer",
        "Edited follow-up",
        "Answer to the edit",
    ]
    places = [page.index(f">{text}<") for text in order]
    assert places == sorted(places)
    assert "Shown to the user" in page
    assert page.count("Version 2 of 2 · shown to the user") == 1  # the regenerated answer
    assert page.count("Version 1 of 2 · shown to the user") == 1  # the first follow-up
    assert page.count("shown to the user</span>") == 2
    assert f'forks after <a href="#review-message-{m["question"].pk}">' in page
    assert "version 1 of 2 of the answer" in page
    assert f'forks after <a href="#review-message-{m["second"].pk}">' in page
    assert "version 2 of 2 of the question" in page
    # Each version links to the others.
    assert f'<a href="#review-message-{m["first"].pk}">1 of 2 (branch 2)</a>' in page
    assert f'<a href="#review-message-{m["second"].pk}">2 of 2 (shown)</a>' in page
    assert f'<a href="#review-message-{m["edited"].pk}">2 of 2 (branch 3)</a>' in page


def test_transcript_without_branches_has_no_branch_labels(client, user, reviewer):
    conversation, _ = exchange(user)
    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert "Version " not in page and "Shown to the user" not in page


def test_transcript_costs_the_same_queries_however_many_branches(client, user, reviewer):
    conversation, m = branched(user)
    as_user(client, reviewer)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(change_url(conversation)).status_code == 200
        return len(captured)

    few = queries()
    for n in range(5):  # more versions of both answers, the first's with a follow-up
        answer = message_create(
            conversation=conversation, role="assistant", text=f"A{n}", parent=m["question"]
        )
        message_create(conversation=conversation, role="user", text=f"Q{n}", parent=answer)
        message_create(
            conversation=conversation, role="assistant", text=f"B{n}", parent=m["follow_up"]
        )
    page = client.get(change_url(conversation)).content.decode()
    assert "Branch 13" in page and "Version 7 of 7" in page
    assert queries() == few


# The list


def test_list_filters_return_the_right_conversations(client, user, other_user, reviewer):
    plain, _ = exchange(user, title="Plain")
    failed, _ = exchange(user, title="Failed", status="failed", error_code="auth")
    stopped, _ = exchange(other_user, title="Stopped", status="stopped")
    reported, reported_reply = exchange(other_user, title="Reported")
    Report.objects.create(message=reported_reply, user=other_user)
    with_image, _ = exchange(user, title="Image")
    image = prepare_image(name="a.png", data=imagefiles.png(), max_side=1540)
    attachment = attachment_create(owner=user, image=image)
    attachment.message = with_image.messages.get(role="user")
    attachment.save()
    with_document, _ = exchange(user, title="Document")
    Document.objects.create(
        owner=user,
        message=with_document.messages.get(role="user"),
        name="report.pdf",
        file="documents/x.pdf",
        mime="application/pdf",
        size=1000,
        page_count=3,
        status="ready",
    )
    Conversation.objects.filter(pk=plain.pk).update(review_status="reviewed")
    Conversation.objects.filter(pk=stopped.pk).update(model="mistral-large-latest")

    as_user(client, reviewer)

    def ids(query: str) -> set[int]:
        return set(listed(client.get(f"{LIST}?{query}")))

    assert ids("answers=failed") == {failed.pk}
    assert ids("answers=any") == {failed.pk, stopped.pk}
    assert ids("reported=yes") == {reported.pk}
    assert ids("images=yes") == {with_image.pk}
    assert ids("images=no") == {plain.pk, failed.pk, stopped.pk, reported.pk, with_document.pk}
    assert ids("documents=yes") == {with_document.pk}
    assert ids("review_status__exact=reviewed") == {plain.pk}
    assert ids(f"owner__id__exact={other_user.pk}") == {stopped.pk, reported.pk}
    assert ids("model=mistral-large-latest") == {stopped.pk}


def test_search_matches_titles_and_message_text(client, user, reviewer):
    by_title, _ = exchange(user, title="Lyon trip")
    by_answer, _ = exchange(user, title="Other", answer="Take the TGV to Lyon Part-Dieu.")
    exchange(user, title="Unrelated", answer="Nothing here")
    as_user(client, reviewer)
    assert listed(client.get(LIST, {"q": "lyon"})) == [by_answer.pk, by_title.pk]
    assert listed(client.get(LIST, {"q": "part-dieu"})) == [by_answer.pk]


def test_reported_conversations_come_first_until_reviewed(client, user, reviewer):
    reported, reply = exchange(user, title="Reported early")
    newer, _ = exchange(user, title="Newer")
    Report.objects.create(message=reply, user=user, reason="rude")
    as_user(client, reviewer)
    assert listed(client.get(LIST)) == [reported.pk, newer.pk]
    Conversation.objects.filter(pk=reported.pk).update(review_status="reviewed")
    assert listed(client.get(LIST)) == [newer.pk, reported.pk]


def test_list_shows_messages_tokens_and_cost(client, user, reviewer):
    conversation, reply = exchange(user)
    for cost in ("0.25", "0.5"):
        ApiCall.objects.create(
            kind="chat", model="m", status="complete", conversation=conversation,
            message=reply, prompt_tokens=100, completion_tokens=20, cost_usd=Decimal(cost),
        )  # fmt: skip
    as_user(client, reviewer)
    row = client.get(LIST).context["cl"].result_list[0]
    assert (row.message_count, row.tokens, row.cost) == (2, 240, Decimal("0.75"))


def test_change_list_costs_the_same_queries_for_1000_conversations(
    client, user, other_user, reviewer, monkeypatch
):
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=user if n % 2 else other_user, model="mistral-small-latest")
        for n in range(1000)
    )
    Message.objects.bulk_create(
        Message(conversation=c, role=role, text="hello", status="complete")
        for c in conversations
        for role in ("user", "assistant")
    )
    ApiCall.objects.bulk_create(
        ApiCall(kind="chat", model="m", status="complete", conversation=c, prompt_tokens=5)
        for c in conversations
    )
    as_user(client, reviewer)

    def queries_for_page_of(size: int) -> int:
        monkeypatch.setattr(ConversationAdmin, "list_per_page", size)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(LIST)
        assert len(response.context["cl"].result_list) == size
        return len(queries)

    small, large = queries_for_page_of(10), queries_for_page_of(500)
    assert small == large
    assert large <= 15


# Actions


def test_bulk_actions_mark_reviewed_and_escalate(client, user, reviewer):
    first, _ = exchange(user)
    second, _ = exchange(user)
    untouched, _ = exchange(user)
    as_user(client, reviewer)
    client.post(LIST, {"action": "mark_reviewed", "_selected_action": [first.pk, second.pk]})
    client.post(LIST, {"action": "mark_escalated", "_selected_action": [second.pk]})
    statuses = dict(Conversation.objects.values_list("pk", "review_status"))
    assert statuses == {first.pk: "reviewed", second.pk: "escalated", untouched.pk: "unreviewed"}


def test_json_export_holds_exactly_the_selected_conversations(client, user, reviewer):
    chosen, reply = exchange(user, title="Chosen", answer="=cmd|' /C calc'!A0")
    Report.objects.create(message=reply, user=user, reason="odd")
    also, _ = exchange(user, title="Also")
    exchange(user, title="Left out")
    as_user(client, reviewer)
    response = client.post(
        LIST, {"action": "export_json", "_selected_action": [chosen.pk, also.pk]}
    )
    assert response["Content-Disposition"] == 'attachment; filename="conversations.json"'
    data = json.loads(response.content)
    assert [c["title"] for c in data["conversations"]] == ["Chosen", "Also"]
    first = data["conversations"][0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert first["messages"][1]["reports"][0]["reason"] == "odd"
    question, answer = first["messages"]
    assert (question["parent"], answer["parent"]) == (None, question["id"])
    assert question["on_shown_branch"] and answer["on_shown_branch"]


def test_exports_give_each_message_its_parent_and_whether_it_was_shown(client, user, reviewer):
    conversation, m = branched(user)
    as_user(client, reviewer)
    selected = {"_selected_action": [conversation.pk]}
    data = json.loads(client.post(LIST, {"action": "export_json", **selected}).content)
    (exported,) = data["conversations"]
    assert exported["shown_leaf"] == m["kept"].pk
    messages = {row["id"]: row for row in exported["messages"]}
    assert len(messages) == 7
    assert {pk: row["parent"] for pk, row in messages.items()} == dict(
        conversation.messages.values_list("id", "parent_id")
    )
    shown = {pk for pk, row in messages.items() if row["on_shown_branch"]}
    assert shown == {m[k].pk for k in ("question", "second", "follow_up", "kept")}

    response = client.post(LIST, {"action": "export_csv", **selected})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {int(r["message_id"]): r["parent_id"] for r in rows} == {
        pk: "" if row["parent"] is None else str(row["parent"]) for pk, row in messages.items()
    }
    assert {int(r["message_id"]) for r in rows if r["on_shown_branch"] == "True"} == shown


def test_csv_export_holds_exactly_the_selected_conversations(client, user, reviewer):
    chosen, _ = exchange(user, title="Chosen", answer='=HYPERLINK("http://evil")')
    exchange(user, title="Left out")
    as_user(client, reviewer)
    response = client.post(LIST, {"action": "export_csv", "_selected_action": [chosen.pk]})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {r["conversation_id"] for r in rows} == {str(chosen.pk)}
    assert [r["role"] for r in rows] == ["user", "assistant"]
    # A formula from the model is exported as text, not run by a spreadsheet.
    assert rows[1]["text"] == '\'=HYPERLINK("http://evil")'


# Usage


def test_usage_page_draws_charts_and_exports_csv(client, user, admin_user):
    ApiCall.objects.create(
        kind="chat", model="mistral-large-latest", status="complete", user=user,
        prompt_tokens=1000, completion_tokens=500, cost_usd=Decimal("0.005"),
    )  # fmt: skip
    as_user(client, admin_user)
    page = client.get(reverse("admin:conversations_usage"))
    assert page.status_code == 200
    html = page.content.decode()
    for chart in ("tokens", "cost", "users"):
        src = reverse("admin:conversations_usage_chart", args=[chart]) + "?days=30"
        assert f'src="{src}"' in html
        svg = client.get(src)
        assert svg["Content-Type"] == "image/svg+xml"
        assert svg.content.startswith(b"<svg")
    tokens_svg = client.get(reverse("admin:conversations_usage_chart", args=["tokens"])).content
    assert b"mistral-large-latest: 1.5k" in tokens_svg
    users_svg = client.get(reverse("admin:conversations_usage_chart", args=["users"])).content
    assert b">ada<" in users_svg

    export = client.get(reverse("admin:conversations_usage_csv"), {"days": "7"})
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert [(r["user"], r["model"], r["prompt_tokens"], r["cost_usd"]) for r in rows] == [
        ("ada", "mistral-large-latest", "1000", "0.00500000")
    ]


def test_usage_page_refuses_a_bad_period_clearly(client, admin_user):
    as_user(client, admin_user)
    page = client.get(reverse("admin:conversations_usage"), {"days": "lots"})
    assert page.status_code == 400
    assert "Enter a whole number of days." in page.content.decode()
    chart = client.get(reverse("admin:conversations_usage_chart", args=["cost"]), {"days": "0"})
    assert chart.status_code == 400
    assert b"from 1 to 366" in chart.content
    unknown = client.get(reverse("admin:conversations_usage_chart", args=["pie"]))
    assert unknown.status_code == 400


def test_prices_are_editable_by_admins(client, admin_user):
    as_user(client, admin_user)
    price = ModelPrice.objects.get(model="mistral-large")
    response = client.post(
        reverse("admin:conversations_modelprice_change", args=[price.pk]),
        {
            "model": "mistral-large",
            "input_usd_per_million": "2.5",
            "output_usd_per_million": "7",
            "usd_per_thousand_pages": "0",
        },
    )
    assert response.status_code == 302
    price.refresh_from_db()
    assert (price.input_usd_per_million, price.output_usd_per_million) == (
        Decimal("2.5"),
        Decimal(7),
    )


def test_api_calls_are_read_only_even_for_superusers(client, user, admin_user):
    conversation, reply = exchange(user)
    call = ApiCall.objects.create(
        kind="chat", model="mistral-small-latest", status="complete", user=user,
        conversation=conversation, message=reply, prompt_tokens=7,
    )  # fmt: skip
    as_user(client, admin_user)
    detail = reverse("admin:conversations_apicall_change", args=[call.pk])
    assert client.get(detail).status_code == 200
    assert client.post(detail, {"prompt_tokens": "0"}).status_code == 403
    assert client.get(reverse("admin:conversations_apicall_add")).status_code == 403
    delete = reverse("admin:conversations_apicall_delete", args=[call.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    call.refresh_from_db()
    assert call.prompt_tokens == 7


def test_what_the_model_received_lists_the_document_pages_sent(client, user, reviewer):
    conversation, reply = exchange(user)
    passages = (
        'Instructions.\n\n[Document "manual.pdf", page 3]\nA.\n\n[Document "manual.pdf", page 4]'
        '\nB.\n\n[Document "manual.pdf", page 37]\nThe access code is 9931.'
    )
    body = {
        "model": "mistral-small-latest",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": passages},
                    {"type": "text", "text": "What is the code?"},
                ],
            }
        ],
    }
    ApiCall.objects.create(
        kind="chat",
        model="mistral-small-latest",
        status="complete",
        user=user,
        conversation=conversation,
        message=reply,
        request=request_summary(body),
    )
    as_user(client, reviewer)
    page = client.get(change_url(conversation)).content.decode()
    assert f"text, {len(passages)} characters, from manual.pdf p. 3-4, 37" in page
    assert "9931" not in page  # lengths and pages, never the text
