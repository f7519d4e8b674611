"""Reporting an answer from the chat page: POST /messages/<id>/report/, CSRF-protected,
only for the user's own answers once they have ended."""

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation, Message, Report
from tests.helpers import message_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def answer(user):
    conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
    message_create(conversation=conversation, role="user", text="2+2?")
    return message_create(conversation=conversation, role="assistant", text="5", status="complete")


def report(client, message, reason: str = ""):
    return client.post(
        reverse("message_report", args=[message.pk]),
        {"reason": reason},
        headers={"accept": "application/json"},
    )


def test_report_stores_the_reason_and_shows_on_the_chat_page(client, user, answer):
    client.force_login(user)
    response = report(client, answer, "  Wrong sum  ")
    assert response.status_code == 201
    assert response.json() == {"report": {"message": answer.pk, "reason": "Wrong sum"}}
    assert list(Report.objects.values_list("message", "user", "reason")) == [
        (answer.pk, user.pk, "Wrong sum")
    ]
    page = client.get(reverse("conversation", args=[answer.conversation_id])).content.decode()
    assert f'data-report="{answer.pk}" aria-label="Reported" aria-pressed="true"' in page


def test_reporting_again_replaces_the_reason(client, user, answer):
    client.force_login(user)
    report(client, answer, "first")
    report(client, answer, "")
    assert list(Report.objects.values_list("reason", flat=True)) == [""]


def test_someone_elses_answer_cannot_be_reported(client, other_user, answer):
    client.force_login(other_user)
    assert report(client, answer).status_code == 404
    assert not Report.objects.exists()


def test_a_streaming_answer_or_a_question_cannot_be_reported(client, user, answer):
    client.force_login(user)
    Message.objects.filter(pk=answer.pk).update(status="streaming")
    response = report(client, answer)
    assert response.status_code == 400
    assert response.json()["errors"]["__all__"] == [
        "Only an answer that has finished can be reported."
    ]
    question = answer.conversation.messages.get(role="user")
    assert report(client, question).status_code == 400
    assert not Report.objects.exists()


def test_an_overlong_reason_is_refused_clearly(client, user, answer):
    client.force_login(user)
    response = report(client, answer, "x" * 2001)
    assert response.status_code == 400
    assert response.json()["errors"]["reason"] == ["Keep the reason under 2,000 characters."]
    assert not Report.objects.exists()


def test_report_needs_a_csrf_token_and_a_signed_in_user(user, answer):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert report(strict, answer).status_code == 403
    anonymous = report(Client(), answer)
    assert anonymous.status_code == 302
    assert not Report.objects.exists()
