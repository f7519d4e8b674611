"""Work that comes at the same moment shares one database trip (conversations/trips.py),
and each item still gets exactly what it would have got alone: a question stored with its
answer, refused as busy, or not found; an answer's ending stored."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import DatabaseError, transaction

from conversations.answers import Ending, Outcome, answer_endings_store
from conversations.models import ApiCall, Conversation, Message
from conversations.selectors import ConversationNotFound
from conversations.services import (
    AnswerInProgress,
    AttachmentsRejected,
    Question,
    Submitted,
    questions_submit,
)
from conversations.trips import Trips
from tests.helpers import message_create


def conversation_with_history(owner, *texts: str) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, model="mistral-small-latest")
    for i, text in enumerate(texts):
        role = Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT
        message_create(conversation=conversation, role=role, text=text)
    return conversation


def stored_texts(conversation: Conversation) -> list[tuple[str, str, str]]:
    return list(conversation.messages.order_by("id").values_list("role", "text", "status"))


@pytest.mark.django_db
def test_a_batch_stores_each_question_with_its_own_history(user, other_user):
    first = conversation_with_history(user, "Hi", "Hello!")
    second = conversation_with_history(other_user, "Bonjour", "Salut !")
    results = questions_submit(
        [
            Question(user, first.pk, "m", "Second question", worker="w1"),
            Question(other_user, second.pk, "m", "Deuxième question"),
        ]
    )
    assert all(isinstance(r, Submitted) for r in results)
    ours, theirs = results
    assert [m.text for m in ours.history] == ["Hi", "Hello!", "Second question"]
    assert [m.text for m in theirs.history] == ["Bonjour", "Salut !", "Deuxième question"]
    assert ours.answer.worker == "w1" and ours.answer.status == Message.Status.PENDING
    assert stored_texts(first)[2:] == [
        ("user", "Second question", "complete"),
        ("assistant", "", "pending"),
    ]
    # The questions first, in one statement, then their answers under them.
    assert ours.question.pk < theirs.question.pk < ours.answer.pk < theirs.answer.pk
    parents = (ours.answer.parent_id, theirs.answer.parent_id)
    assert parents == (ours.question.pk, theirs.question.pk)
    first.refresh_from_db()
    assert first.updated_at == ours.conversation.updated_at
    assert not ours.created


@pytest.mark.django_db
def test_two_questions_for_one_conversation_in_a_batch_store_only_the_first(user):
    conversation = conversation_with_history(user)
    first, second = questions_submit(
        [
            Question(user, conversation.pk, "m", "One"),
            Question(user, conversation.pk, "m", "Two"),
        ]
    )
    assert isinstance(first, Submitted)
    assert isinstance(second, AnswerInProgress) and second.args == (conversation.pk,)
    assert [text for _, text, _ in stored_texts(conversation)] == ["One", ""]


@pytest.mark.django_db
def test_a_conversation_already_answering_is_busy_in_a_batch(user):
    conversation = conversation_with_history(user, "Hi")
    message_create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING
    )
    (result,) = questions_submit([Question(user, conversation.pk, "m", "Again?")])
    assert isinstance(result, AnswerInProgress)
    assert conversation.messages.count() == 2


@pytest.mark.django_db
def test_missing_or_someone_elses_conversation_is_not_found_and_stores_nothing(user, other_user):
    theirs = conversation_with_history(other_user, "Private")
    ours = conversation_with_history(user)
    results = questions_submit(
        [
            Question(user, theirs.pk, "m", "Peek"),
            Question(user, 987_654, "m", "Nowhere"),
            Question(user, "1; DROP TABLE", "m", "Not an id"),
            Question(user, ours.pk, "m", "Mine"),
        ]
    )
    assert [type(r) for r in results] == [
        ConversationNotFound,
        ConversationNotFound,
        ConversationNotFound,
        Submitted,
    ]
    assert stored_texts(theirs) == [("user", "Private", "complete")]
    assert Message.objects.filter(text__in=["Peek", "Nowhere", "Not an id"]).count() == 0


@pytest.mark.django_db
def test_questions_with_files_or_a_new_conversation_go_alone_in_the_same_batch(user):
    existing = conversation_with_history(user)
    new, rejected, plain = questions_submit(
        [
            Question(user, None, "mistral-small-latest", "Start something"),
            Question(user, existing.pk, "m", "With a picture", attachment_ids=[424242]),
            Question(user, existing.pk, "m", "Just text"),
        ]
    )
    assert isinstance(new, Submitted) and new.created
    assert stored_texts(new.conversation) == [
        ("user", "Start something", "complete"),
        ("assistant", "", "pending"),
    ]
    # Plain questions are stored first, so the one with a picture finds the conversation
    # answering, as it would had it come a moment later; it leaves nothing behind.
    assert isinstance(rejected, AnswerInProgress)
    assert isinstance(plain, Submitted)
    assert [text for _, text, _ in stored_texts(existing)] == ["Just text", ""]


@pytest.mark.django_db
def test_rejected_attachments_roll_back_only_their_own_question(user):
    a = conversation_with_history(user)
    b = conversation_with_history(user)
    rejected, plain = questions_submit(
        [
            Question(user, a.pk, "m", "With a picture", attachment_ids=[424242]),
            Question(user, b.pk, "m", "Just text"),
        ]
    )
    assert isinstance(rejected, AttachmentsRejected)
    assert isinstance(plain, Submitted)
    assert stored_texts(a) == []
    assert [text for _, text, _ in stored_texts(b)] == ["Just text", ""]


@pytest.mark.django_db(transaction=True)
async def test_a_failing_trip_is_tried_again_question_by_question(user):
    """A database error in the shared transaction rolls it all back, and each question is
    then stored on its own: nothing half-stored, nothing twice."""
    a, b = [await database_sync_to_async(conversation_with_history)(user, text) for text in "AB"]

    def fails_when_shared(questions):
        with transaction.atomic():
            results = questions_submit(questions)
            if len(questions) > 1:
                raise DatabaseError("disk I/O error")
        return results

    store = Trips(fails_when_shared)
    results = await asyncio.gather(
        store(Question(user, a.pk, "m", "First")), store(Question(user, b.pk, "m", "Second"))
    )
    assert [[m.text for m in r.history] for r in results] == [["A", "First"], ["B", "Second"]]
    assert await database_sync_to_async(stored_texts)(a) == [
        ("user", "A", "complete"),
        ("user", "First", "complete"),
        ("assistant", "", "pending"),
    ]
    assert await Message.objects.filter(text="Second").acount() == 1


@pytest.mark.django_db(transaction=True)
async def test_questions_sent_together_share_trips_and_each_gets_its_own_result(user):
    conversations = [
        await database_sync_to_async(conversation_with_history)(user, f"Hi {i}") for i in range(12)
    ]
    trips: list[int] = []

    def counted(questions):
        trips.append(len(questions))
        return questions_submit(questions)

    store = Trips(counted)
    sends = [Question(user, c.pk, "m", f"Question {i}") for i, c in enumerate(conversations)]
    sends.append(Question(user, conversations[0].pk, "m", "Same conversation again"))
    results = await asyncio.gather(*(store(q) for q in sends), return_exceptions=True)
    assert trips == [13]  # all sent before the trip left: one trip
    assert [r.question.text for r in results[:12]] == [q.text for q in sends[:12]]
    assert isinstance(results[12], AnswerInProgress)
    assert await Message.objects.filter(status=Message.Status.PENDING).acount() == 12

    # One sent alone goes at once, in a trip of its own.
    with pytest.raises(AnswerInProgress):
        await store(Question(user, conversations[1].pk, "m", "Alone"))
    assert trips == [13, 1]


@pytest.mark.django_db(transaction=True)
async def test_a_trip_that_fails_fails_its_callers_and_the_next_trip_still_goes(user):
    conversation = await database_sync_to_async(conversation_with_history)(user)
    calls = 0

    def fails_once(questions):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database thread down")
        return questions_submit(questions)

    store = Trips(fails_once)
    with pytest.raises(RuntimeError, match="database thread down"):
        await store(Question(user, conversation.pk, "m", "Lost"))
    submitted = await store(Question(user, conversation.pk, "m", "Kept"))
    assert submitted.question.text == "Kept"
    assert await Message.objects.filter(text="Lost").acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_answers_ending_together_are_stored_in_one_trip_each_with_its_usage(user):
    """The ending of an answer whose conversation was deleted meanwhile is not stored, and
    does not stop the others: their rows and usage are."""

    def answering(text: str) -> tuple[Conversation, Message]:
        conversation = conversation_with_history(user, text)
        answer = message_create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
        )
        return conversation, answer

    pairs = [await database_sync_to_async(answering)(text) for text in ("one", "two", "gone")]
    trips: list[int] = []

    def counted(endings):
        trips.append(len(endings))
        return answer_endings_store(endings)

    store = Trips(counted)
    endings = []
    for conversation, answer in pairs:
        request = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        outcome = Outcome(status=Message.Status.COMPLETE, text=f"Answer {answer.pk}", model="m")
        endings.append(Ending(answer.pk, conversation.pk, user.pk, outcome, request))
    await pairs[2][0].adelete()

    stored = await asyncio.gather(*(store(ending) for ending in endings))
    assert [result is not None for result in stored] == [True, True, False]
    assert trips == [3]
    for _, answer in pairs[:2]:
        await answer.arefresh_from_db()
        assert (answer.status, answer.text) == ("complete", f"Answer {answer.pk}")
    calls = [c async for c in ApiCall.objects.order_by("id")]
    assert [c.message_id for c in calls] == [pairs[0][1].pk, pairs[1][1].pk, None]
    assert [c.user_id for c in calls] == [user.pk] * 3  # the deleted one's usage still counts
