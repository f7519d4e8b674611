"""Search over a user's conversations (conversations/search.py), and pinning and archiving:
what a person finds, sees highlighted and no longer sees in the sidebar, on whichever
database the run uses (SQLite FTS5 or PostgreSQL's full-text search)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from conversations.answers import Ending, Outcome, answer_endings_store, message_progress_save
from conversations.branches import question_edit
from conversations.models import Conversation, Message
from conversations.search import conversation_search
from conversations.services import conversation_delete, conversation_rename
from tests.helpers import message_create

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}


def _conversation(owner, title="", *texts):
    """A conversation of questions and answers in turn, all ended."""
    conversation = Conversation.objects.create(
        owner=owner, model="mistral-small-latest", title=title
    )
    for i, text in enumerate(texts):
        role = Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT
        message_create(conversation=conversation, role=role, text=text)
    return conversation


def _found(user, query):
    return [hit.conversation_id for hit in conversation_search(user=user, query=query)]


def _results(client, query):
    response = client.get(reverse("search"), {"q": query, "partial": "1"})
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_search_finds_by_answer_text(user):
    wanted = _conversation(user, "Travel", "Where should I go?", "Visit the quokkas on Rottnest.")
    _conversation(user, "Cooking", "How long to boil an egg?", "Nine minutes.")
    hits = conversation_search(user=user, query="quokkas")
    assert [hit.conversation_id for hit in hits] == [wanted.pk]
    answer = wanted.messages.get(role=Message.Role.ASSISTANT)
    assert hits[0].message_id == answer.pk
    assert hits[0].role == "assistant"


def test_search_finds_by_question_and_by_title(user):
    by_question = _conversation(user, "", "Tell me about axolotls", "They are salamanders.")
    by_title = _conversation(user, "Axolotl care", "Water temperature?", "Cool, 16 to 18 °C.")
    assert set(_found(user, "axolotls")) == {by_question.pk}
    assert set(_found(user, "axolotl")) == {by_question.pk, by_title.pk}  # the last word, a prefix


def test_search_finds_by_document_name(user):
    conversation = _conversation(user, "Reports")
    message_create(
        conversation=conversation,
        role=Message.Role.USER,
        text="Summarise it",
        parts=[{"type": "document", "document": 1, "name": "quarterly-figures.pdf", "pages": 3}],
    )
    hits = conversation_search(user=user, query="quarterly")
    assert [hit.conversation_id for hit in hits] == [conversation.pk]
    assert "quarterly" in "".join(text for text, mark in hits[0].snippet.parts if mark).lower()
    assert _found(user, "document") == []  # the parts' keys are not words of the message


def test_search_needs_every_word_the_last_as_a_prefix(user):
    both = _conversation(user, "", "red panda habitat", "Forests.")
    _conversation(user, "", "red wine", "A Bordeaux.")
    assert _found(user, "red pan") == [both.pk]
    assert _found(user, "panda red") == [both.pk]
    assert _found(user, "pan red") == []  # only the last word is a prefix


def test_search_ignores_case_and_query_syntax(user):
    conversation = _conversation(user, "", "What is NEAR in FTS5?", "An operator.")
    for query in ["near", 'NEAR("what"', "what AND", "fts5*", "-what", "what's near", "(((", "\"'"]:
        found = _found(user, query)
        assert found in ([conversation.pk], []), query
    assert _found(user, 'NEAR("what"') == [conversation.pk]
    assert _found(user, "   ") == []


def test_search_finds_accented_words_as_typed(user):
    conversation = _conversation(user, "", "Un café à Besançon", "Déjà vu.")
    assert _found(user, "café") == [conversation.pk]
    assert _found(user, "besanç") == [conversation.pk]
    assert _found(user, "DÉJÀ") == [conversation.pk]
    hit = conversation_search(user=user, query="café")[0]
    assert [text for text, mark in hit.snippet.parts if mark] == ["café"]
    if connection.vendor == "sqlite":  # its tokenizer drops diacritics; PostgreSQL's keeps them
        assert _found(user, "cafe") == [conversation.pk]


def test_search_never_finds_another_users_conversations(user, other_user):
    _conversation(other_user, "Secret plans", "the password is swordfish", "Noted: swordfish.")
    mine = _conversation(user, "", "a swordfish recipe?", "Grill it.")
    assert _found(user, "swordfish") == [mine.pk]
    assert _found(user, "secret") == []
    assert _found(user, "password") == []


def test_search_results_page_never_shows_another_users_text(signed_in, other_user):
    _conversation(other_user, "Bob's", "zeppelin routes", "North.")
    html = _results(signed_in, "zeppelin")
    assert "No conversation matches" in html
    assert "routes" not in html and "Bob" not in html


def test_snippet_is_highlighted_and_escaped(signed_in, user):
    _conversation(
        user,
        "<b>bold</b> title",
        "What does <script>alert('x')</script> do near the marmot?",
        "It <img src=x onerror=alert(1)> runs a marmot script.",
    )
    html = _results(signed_in, "marmot")
    assert "<mark>marmot</mark>" in html.lower()
    assert "<script>" not in html and "<img" not in html
    assert "onerror=alert(1)&gt; runs a <mark>marmot</mark>" in html
    title_html = _results(signed_in, "bold")
    assert "<mark>bold</mark>" in title_html.lower()
    assert "&lt;b&gt;" in title_html and "<b>" not in title_html


def test_result_links_to_the_message_that_matched(signed_in, user):
    conversation = _conversation(user, "", "first question", "an answer about lemurs")
    answer = conversation.messages.get(role=Message.Role.ASSISTANT)
    html = _results(signed_in, "lemurs")
    assert f'href="/c/{conversation.pk}/#message-{answer.pk}"' in html
    assert f'data-message="{answer.pk}"' in html


def test_search_page_works_without_script(signed_in, user):
    _conversation(user, "", "okapi facts", "Related to giraffes.")
    response = signed_in.get(reverse("search"), {"q": "okapi"})
    assert response.status_code == 200
    assert b"<mark>okapi</mark>" in response.content
    assert b"<html" in response.content


def test_no_match_says_so(signed_in, user):
    _conversation(user, "", "hello", "hi")
    assert "No conversation matches" in _results(signed_in, "xylophone")


def test_streaming_answer_is_found_once_it_ends(user):
    conversation = _conversation(user, "", "Name a big cat")
    answer = message_create(
        conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.STREAMING
    )
    message_progress_save(progress={answer.pk: "The jaguar"})
    assert _found(user, "jaguar") == []  # saves while streaming are not indexed
    answer_endings_store(
        [
            Ending(
                message_id=answer.pk,
                conversation_id=conversation.pk,
                owner_id=user.pk,
                outcome=Outcome(status="complete", text="The jaguar, of the Americas."),
                request=None,
            )
        ]
    )
    assert _found(user, "americas") == [conversation.pk]
    assert _found(user, "jaguar") == [conversation.pk]


def test_changed_text_is_searched_as_it_now_reads(user):
    conversation = _conversation(user, "", "about wombats", "Wombats dig.")
    answer = conversation.messages.get(role=Message.Role.ASSISTANT)
    answer.text = "Koalas sleep."
    answer.save()
    assert _found(user, "dig") == []
    assert _found(user, "koalas") == [conversation.pk]


def test_edited_question_is_found_and_the_old_one_still_opens_its_branch(user):
    conversation = _conversation(user, "", "facts about narwhals", "Tusks.")
    question = conversation.messages.get(role=Message.Role.USER)
    edited = question_edit(
        question=question, text="facts about belugas", attachment_ids=[], document_ids=[]
    )
    hits = conversation_search(user=user, query="belugas")
    assert [(h.conversation_id, h.message_id) for h in hits] == [
        (conversation.pk, edited.question.pk)
    ]
    # The first version is still a branch of the conversation, so it is still found there.
    assert conversation_search(user=user, query="narwhals")[0].message_id == question.pk


def test_renamed_title_is_searched_as_it_now_reads(user):
    conversation = _conversation(user, "Old name", "hi", "hello")
    conversation_rename(conversation=conversation, title="Gardening notes")
    assert _found(user, "old") == []
    assert _found(user, "gardening") == [conversation.pk]


def test_deleted_conversation_is_not_found(user):
    conversation = _conversation(user, "Ephemeral", "capybara", "A rodent.")
    conversation_delete(conversation=conversation)
    assert _found(user, "capybara") == []
    assert _found(user, "ephemeral") == []


def test_snippet_is_the_stretch_around_the_first_match():
    from conversations.search import Snippet

    text = " ".join(f"w{i}" for i in range(100)).replace("w50", "<b>Ünïcode</b>")
    snippet = Snippet.around(text, ["unicode"])
    shown = "".join(text for text, _ in snippet.parts)
    assert shown.startswith("…w45 ") and shown.endswith(" w66…")  # "b" is a word too
    assert [text for text, mark in snippet.parts if mark] == ["Ünïcode"]
    assert "<b>Ünïcode</b>" in shown
    lines = Snippet.around("first line\n\n  second  ZEBRA line", ["zeb"])
    assert lines.parts == [("first line second ", False), ("ZEBRA", True), (" line", False)]


def test_search_shows_newest_first_and_one_hit_per_conversation(user):
    older = _conversation(user, "", "ibis one", "ibis two", "ibis three")
    newer = _conversation(user, "", "ibis again", "ok")
    hits = conversation_search(user=user, query="ibis")
    assert [hit.conversation_id for hit in hits] == [newer.pk, older.pk]
    assert hits[1].message_id == older.messages.order_by("id")[2].pk  # its newest match


# Pin and archive


def test_archived_conversation_leaves_the_sidebar_and_is_still_found(signed_in, user):
    conversation = _conversation(user, "Hidden heron", "herons", "Birds.")
    response = signed_in.post(reverse("conversation_archive", args=[conversation.pk]), **JSON)
    assert response.status_code == 200
    assert response.json()["conversation"]["archived"] is True
    page = signed_in.get(reverse("chat")).content.decode()
    assert f'data-id="{conversation.pk}"' not in page
    html = _results(signed_in, "heron")
    assert f"/c/{conversation.pk}/" in html and "Archived" in html
    archived = signed_in.get(reverse("archived")).content.decode()
    assert f'data-id="{conversation.pk}"' in archived
    # Brought back, it is in the sidebar again and no longer in the archive.
    signed_in.post(reverse("conversation_archive", args=[conversation.pk]), {"archived": "0"})
    assert f'data-id="{conversation.pk}"' in signed_in.get(reverse("chat")).content.decode()
    assert f'data-id="{conversation.pk}"' not in signed_in.get(reverse("archived")).content.decode()


def test_archived_list_holds_only_the_users_own(signed_in, user, other_user):
    theirs = _conversation(other_user, "Their archive")
    theirs.archived_at = theirs.created_at
    theirs.save()
    archived = signed_in.get(reverse("archived")).content.decode()
    assert "Their archive" not in archived and f'data-id="{theirs.pk}"' not in archived


def test_archived_conversation_page_says_so_and_brings_it_back(signed_in, user):
    conversation = _conversation(user, "Shelved", "hello", "hi")
    signed_in.post(reverse("conversation_archive", args=[conversation.pk]))
    page = signed_in.get(reverse("conversation", args=[conversation.pk])).content.decode()
    assert "Archived: not in the sidebar." in page
    response = signed_in.post(
        reverse("conversation_archive", args=[conversation.pk]), {"archived": "0"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("conversation", args=[conversation.pk])
    page = signed_in.get(response["Location"]).content.decode()
    assert "Archived: not in the sidebar." not in page


def test_pinned_conversations_lead_the_sidebar(signed_in, user):
    pinned = _conversation(user, "Pinned one")
    _conversation(user, "Newer one")
    response = signed_in.post(reverse("conversation_pin", args=[pinned.pk]), **JSON)
    assert response.json()["conversation"]["pinned"] is True
    page = signed_in.get(reverse("chat")).content.decode()
    pinned_list = page.split('id="pinned-list"')[1].split("</ul>")[0]
    recent_list = page.split('id="conv-list"')[1].split("</ul>")[0]
    assert "Pinned one" in pinned_list and "Newer one" not in pinned_list
    assert "Pinned one" not in recent_list and "Newer one" in recent_list
    signed_in.post(reverse("conversation_pin", args=[pinned.pk]), {"pinned": "0"})
    page = signed_in.get(reverse("chat")).content.decode()
    assert "Pinned one" in page.split('id="conv-list"')[1].split("</ul>")[0]


def test_archiving_unpins_and_pinning_brings_back(signed_in, user):
    conversation = _conversation(user, "Both")
    signed_in.post(reverse("conversation_pin", args=[conversation.pk]))
    signed_in.post(reverse("conversation_archive", args=[conversation.pk]))
    conversation.refresh_from_db()
    assert conversation.archived_at is not None and conversation.pinned_at is None
    signed_in.post(reverse("conversation_pin", args=[conversation.pk]))
    conversation.refresh_from_db()
    assert conversation.archived_at is None and conversation.pinned_at is not None


def test_pin_and_archive_tell_every_tab(signed_in, user, django_capture_on_commit_callbacks):
    conversation = _conversation(user, "Told")
    with django_capture_on_commit_callbacks() as callbacks:
        signed_in.post(reverse("conversation_archive", args=[conversation.pk]), **JSON)
    assert len(callbacks) == 1


def test_pin_and_archive_keep_the_order_of_the_rest(signed_in, user):
    conversation = _conversation(user, "Steady")
    before = Conversation.objects.get(pk=conversation.pk).updated_at
    signed_in.post(reverse("conversation_pin", args=[conversation.pk]))
    signed_in.post(reverse("conversation_archive", args=[conversation.pk]))
    assert Conversation.objects.get(pk=conversation.pk).updated_at == before


# The index itself


@pytest.mark.django_db(transaction=True)
def test_migration_indexes_existing_messages(user):
    executor = MigrationExecutor(connection)
    before = [("conversations", "0012_answer_format")]
    after = executor.loader.graph.leaf_nodes("conversations")
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        owner = old.get_model("auth", "User").objects.get(pk=user.pk)
        conversation = old.get_model("conversations", "Conversation").objects.create(
            owner=owner, model="mistral-small-latest", title="Before search"
        )
        old.get_model("conversations", "Message").objects.create(
            conversation=conversation, role="assistant", text="an older pangolin answer"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
    assert _found(user, "pangolin") == [conversation.pk]
    assert _found(user, "before") == [conversation.pk]


@pytest.mark.skipif(
    "connection.vendor != 'sqlite'",
    reason="only SQLite drops a table's triggers when a migration rebuilds the table; "
    "PostgreSQL's index trigger survives, and its own test is the migration's",
)
def test_triggers_come_back_after_a_table_rebuild(user):
    from django.core.management.sql import emit_post_migrate_signal

    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER conversations_message_fts_insert")
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    conversation = _conversation(user, "", "tapir")
    assert _found(user, "tapir") == [conversation.pk]
