import html
import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.models import Conversation, Message
from conversations.web.pages import SIDEBAR_PAGE_SIZE
from tests.helpers import link_in_order, message_create

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}

VALID_SETTINGS = {
    "model": "mistral-large-latest",
    "system_prompt": "Be brief.",
    "temperature": "0.7",
    "top_p": "0.9",
    "max_tokens": "512",
    "random_seed": "42",
    "safe_prompt": "on",
}


@pytest.fixture
def conversation(user):
    return Conversation.objects.create(owner=user, model="mistral-small-latest", title="Mine")


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def _add_messages(conversation, count):
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
            text=f"message {i}",
            html="" if i % 2 == 0 else f"<p>message {i}</p>",
            model="" if i % 2 == 0 else "mistral-small-latest",
            prompt_tokens=None if i % 2 == 0 else 10,
            completion_tokens=None if i % 2 == 0 else 20,
            time_to_first_token_ms=None if i % 2 == 0 else 300,
        )
        for i in range(count)
    )
    link_in_order(conversation.pk)


# Access


@pytest.mark.parametrize(
    ("method", "name", "kwargs"),
    [
        ("get", "chat", {}),
        ("get", "conversation", {"pk": 1}),
        ("post", "conversation_rename", {"pk": 1}),
        ("post", "conversation_delete", {"pk": 1}),
        ("get", "conversation_settings", {"pk": 1}),
        ("post", "conversation_settings", {"pk": 1}),
        ("get", "sidebar_more", {}),
        ("get", "archived", {}),
        ("get", "search", {}),
        ("post", "conversation_pin", {"pk": 1}),
        ("post", "conversation_archive", {"pk": 1}),
        ("get", "models_json", {}),
        ("get", "password_change", {}),
    ],
)
def test_pages_require_login(client, method, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "conversation"),
        ("post", "conversation_rename"),
        ("post", "conversation_delete"),
        ("get", "conversation_settings"),
        ("post", "conversation_settings"),
        ("post", "conversation_pin"),
        ("post", "conversation_archive"),
    ],
)
def test_someone_elses_conversation_is_not_found(client, other_user, conversation, method, name):
    client.force_login(other_user)
    url = reverse(name, kwargs={"pk": conversation.pk})
    response = getattr(client, method)(url, VALID_SETTINGS | {"title": "Taken"})
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Mine"
    assert conversation.model == "mistral-small-latest"
    assert conversation.pinned_at is None and conversation.archived_at is None


def test_missing_conversation_is_not_found(signed_in):
    assert signed_in.get(reverse("conversation", kwargs={"pk": 999_999})).status_code == 404


# Accounts


def test_signup_creates_the_user_and_logs_in(client, django_user_model):
    response = client.post(
        reverse("signup"),
        {"username": "grace", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("chat")
    user = django_user_model.objects.get(username="grace")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get(reverse("chat")).status_code == 200


def test_signup_with_mismatched_passwords_shows_the_error(client, django_user_model):
    response = client.post(
        reverse("signup"),
        {"username": "grace", "password1": "a-long-pass-phrase", "password2": "another-one-1"},
    )
    assert response.status_code == 200
    assert b"field--invalid" in response.content
    assert not django_user_model.objects.filter(username="grace").exists()


def test_signup_when_signed_in_goes_to_the_chat(signed_in):
    response = signed_in.get(reverse("signup"))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat")


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'<html lang="en">' in response.content


def test_logout_needs_post(signed_in):
    assert signed_in.get(reverse("logout")).status_code == 405
    assert signed_in.post(reverse("logout")).status_code == 302
    assert "_auth_user_id" not in signed_in.session


# Session end closes sockets


def test_logout_ends_the_users_sockets(signed_in, user_events):
    signed_in.post(reverse("logout"))
    assert user_events() == {"type": "session.end"}


def test_password_change_ends_the_users_sockets(
    signed_in, user_events, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(
            reverse("password_change"),
            {
                "old_password": "pw-for-tests-1",
                "new_password1": "a-brand-new-phrase",
                "new_password2": "a-brand-new-phrase",
            },
        )
    assert response.status_code == 302
    assert user_events() == {"type": "session.end"}


def test_deactivation_ends_the_users_sockets(user, user_events, django_capture_on_commit_callbacks):
    user.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        user.save()
    assert user_events() == {"type": "session.end"}


def test_other_user_saves_leave_sockets_open(user, user_events, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        user.first_name = "Ada"
        user.save()
        user.save(update_fields=["last_login"])
    assert callbacks == []
    with pytest.raises(TimeoutError):
        user_events(within=0.05)


# The chat page


def test_chat_page_renders_the_empty_state(signed_in):
    response = signed_in.get(reverse("chat"))
    assert response.status_code == 200
    assert b"Ask anything" in response.content
    assert b'data-conversation=""' in response.content


def test_conversation_page_gives_the_tools_menu_the_conversations_tools(signed_in, conversation):
    keys = ["builtin:datetime", 'mcp:lab "x"/add']
    conversation.tools = keys
    conversation.save(update_fields=["tools"])

    def page_tools(url: str) -> list[str]:
        content = signed_in.get(url).content.decode()
        return json.loads(html.unescape(re.search(r' data-tools="([^"]*)"', content)[1]))

    assert page_tools(reverse("conversation", kwargs={"pk": conversation.pk})) == keys
    assert page_tools(reverse("chat")) == []


def test_conversation_page_shows_messages_escaped_and_rendered(signed_in, conversation):
    message_create(conversation=conversation, role="user", text="<b>hi</b> & bye")
    message_create(
        conversation=conversation,
        role="assistant",
        text="**yes**",
        html="<p><strong>yes</strong></p>",
        model="mistral-small-latest",
        prompt_tokens=5,
        completion_tokens=1234,
        time_to_first_token_ms=1500,
    )
    content = signed_in.get(reverse("conversation", kwargs={"pk": conversation.pk})).content
    assert b"&lt;b&gt;hi&lt;/b&gt; &amp; bye" in content
    assert b"<p><strong>yes</strong></p>" in content
    assert "mistral-small-latest · 5 in · 1,234 out tokens · first token 1.5 s".encode() in content
    assert f'data-conversation="{conversation.pk}"'.encode() in content


@pytest.mark.parametrize(
    ("model", "author"),
    [
        ("mistral-small-latest", "Mistral"),
        ("local/smollm2-135m", "Small local model"),
        ("lab/llama3.2:1b", "llama3.2:1b"),
    ],
)
def test_answers_and_the_composer_name_whoever_answers(signed_in, user, model, author):
    conversation = Conversation.objects.create(owner=user, model=model)
    message_create(conversation=conversation, role="user", text="Hi")
    message_create(
        conversation=conversation, role="assistant", text="Hello", html="<p>Hello</p>", model=model
    )
    content = signed_in.get(reverse("conversation", kwargs={"pk": conversation.pk})).content
    assert f'<span class="msg-author-name">{author}</span>'.encode() in content
    assert f'placeholder="Message {author}…"'.encode() in content


def test_interrupted_answer_without_html_is_rendered_from_its_text(signed_in, conversation):
    message_create(conversation=conversation, role="assistant", text="*cut*", status="interrupted")
    content = signed_in.get(reverse("conversation", kwargs={"pk": conversation.pk})).content
    assert b"<em>cut</em>" in content
    assert b"Interrupted" in content


def test_conversation_page_queries_do_not_grow_with_messages(signed_in, conversation, settings):
    url = reverse("conversation", kwargs={"pk": conversation.pk})
    _add_messages(conversation, 2)
    with CaptureQueriesContext(connection) as few:
        assert signed_in.get(url).status_code == 200
    _add_messages(conversation, 998)
    with CaptureQueriesContext(connection) as many:
        response = signed_in.get(url)
    assert response.content.count(b'class="msg msg--') == settings.CHAT_PAGE_MESSAGES
    assert len(many) == len(few)
    # Branches: every answer regenerated once changes nothing either.
    answers = Message.objects.filter(conversation=conversation, role="assistant")
    Message.objects.bulk_create(
        Message(conversation=conversation, role="assistant", text="again", parent_id=a.parent_id)
        for a in answers
    )
    with CaptureQueriesContext(connection) as branched:
        assert signed_in.get(url).status_code == 200
    assert len(branched) == len(few)


def test_branch_switch_and_thread_queries_do_not_grow_with_messages(signed_in, conversation):
    switch = reverse("conversation_branch", kwargs={"pk": conversation.pk})
    thread = reverse("thread", kwargs={"pk": conversation.pk})

    def queries(last_answer) -> tuple[int, int]:
        again = Message.objects.create(
            conversation=conversation, role="assistant", text="again", parent=last_answer.parent
        )
        counts = []
        for url, data in ((switch, {"message": last_answer.pk}), (thread, None)):
            with CaptureQueriesContext(connection) as captured:
                response = signed_in.post(url, data) if data else signed_in.get(url)
            assert response.status_code == 200
            assert response.json()["leaf"] == last_answer.pk
            counts.append(len(captured))
        Message.objects.filter(pk=again.pk).delete()
        return tuple(counts)

    _add_messages(conversation, 4)
    few = queries(conversation.messages.order_by("id").last())
    _add_messages(conversation, 996)
    answers = Message.objects.filter(conversation=conversation, role="assistant")
    Message.objects.bulk_create(  # every answer regenerated once
        Message(conversation=conversation, role="assistant", text="again", parent_id=a.parent_id)
        for a in answers
    )
    assert queries(answers.order_by("id").last()) == few


def test_a_long_conversation_shows_its_end_and_loads_the_rest_on_demand(
    signed_in, conversation, settings
):
    settings.CHAT_PAGE_MESSAGES = 40
    _add_messages(conversation, 100)
    page = signed_in.get(reverse("conversation", kwargs={"pk": conversation.pk})).content
    earlier_url = reverse("thread_earlier", kwargs={"pk": conversation.pk})

    assert page.count(b'class="msg msg--') == 40
    assert b"message 60<" in page and b"message 59<" not in page
    assert b'id="thread-earlier"' in page

    first_shown = conversation.messages.order_by("id")[60].pk
    more = signed_in.get(earlier_url, {"before": first_shown}).json()
    assert more["earlier"] is True
    assert more["html"].count('class="msg msg--') == 40
    assert "message 20<" in more["html"] and "message 59<" in more["html"]
    assert "message 19<" not in more["html"] and "message 60<" not in more["html"]

    last = signed_in.get(earlier_url, {"before": conversation.messages.order_by("id")[20].pk})
    assert last.json()["earlier"] is False
    assert last.json()["html"].count('class="msg msg--') == 20


def test_earlier_messages_are_the_owners_only(client, other_user, conversation):
    _add_messages(conversation, 4)
    client.force_login(other_user)
    response = client.get(
        reverse("thread_earlier", kwargs={"pk": conversation.pk}), {"before": 10**6}
    )
    assert response.status_code == 404


def test_earlier_messages_need_a_message_id(signed_in, conversation):
    url = reverse("thread_earlier", kwargs={"pk": conversation.pk})
    assert signed_in.get(url).status_code == 400
    assert signed_in.get(url, {"before": "x"}).status_code == 400


def test_a_short_conversation_has_no_earlier_button(signed_in, conversation):
    _add_messages(conversation, 4)
    page = signed_in.get(reverse("conversation", kwargs={"pk": conversation.pk})).content
    assert b'id="thread-earlier"' not in page


def test_conversation_page_with_a_thousand_messages_uses_few_queries(
    signed_in, conversation, django_assert_max_num_queries
):
    _add_messages(conversation, 1000)
    # 7th: the answers the user reported; 8th: the answers' totals under the title; 9th:
    # the tree's (id, parent) pairs, to find the branch shown; 10th: the shown answers'
    # tool calls; 11th: the user's saved schemas, for the settings dialog; 12th: the pinned
    # conversations
    with django_assert_max_num_queries(12):
        signed_in.get(reverse("conversation", kwargs={"pk": conversation.pk}))


def test_pages_send_a_strict_content_security_policy(signed_in, conversation):
    response = signed_in.get(reverse("conversation", kwargs={"pk": conversation.pk}))
    policy = response["Content-Security-Policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert "'self'" in script_src
    assert "unsafe-inline" not in script_src
    assert "unsafe-eval" not in script_src
    assert b"<script>" not in response.content
    assert b" style=" not in response.content


# Sidebar


def test_sidebar_shows_newest_fifty_then_pages_by_cursor(signed_in, user, other_user):
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=user, model="m", title=f"chat {i}") for i in range(120)
    )
    Conversation.objects.create(owner=other_user, model="m", title="not mine")
    newest_first = [c.title for c in sorted(conversations, key=lambda c: -c.pk)]

    response = signed_in.get(reverse("chat"))
    page = [c.title for c in response.context["conversations"]]
    assert page == newest_first[:SIDEBAR_PAGE_SIZE]
    seen = page
    cursor = response.context["more_cursor"]
    while cursor:
        response = signed_in.get(reverse("sidebar_more"), {"before": cursor})
        assert response.status_code == 200
        seen += [c.title for c in response.context["conversations"]]
        cursor = response.context["more_cursor"]
    assert seen == newest_first
    assert b"not mine" not in response.content


def test_sidebar_cursor_orders_by_last_update(signed_in, user):
    old = Conversation.objects.create(owner=user, model="m", title="old")
    for i in range(SIDEBAR_PAGE_SIZE):
        Conversation.objects.create(owner=user, model="m", title=f"new {i}")
    old.save()  # touched last: now the newest
    response = signed_in.get(reverse("chat"))
    assert response.context["conversations"][0].title == "old"
    more = signed_in.get(reverse("sidebar_more"), {"before": response.context["more_cursor"]})
    assert [c.title for c in more.context["conversations"]] == ["new 0"]


@pytest.mark.parametrize("cursor", ["", "x", "12", "1_2_3"])
def test_sidebar_rejects_a_bad_cursor(signed_in, cursor):
    assert signed_in.get(reverse("sidebar_more"), {"before": cursor}).status_code == 400


# Rename and delete


def test_rename_returns_json_and_tells_the_users_tabs(
    signed_in, conversation, user_events, django_capture_on_commit_callbacks
):
    url = reverse("conversation_rename", kwargs={"pk": conversation.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(url, {"title": "  Monads, briefly  "}, **JSON)
    assert response.status_code == 200
    assert response.json()["conversation"]["title"] == "Monads, briefly"
    conversation.refresh_from_db()
    assert conversation.title == "Monads, briefly"
    frame = user_events()
    assert frame["type"] == "conversation"
    assert frame["conversation"]["id"] == conversation.pk
    assert frame["conversation"]["title"] == "Monads, briefly"


def test_rename_to_blank_gives_back_new_chat(signed_in, conversation):
    url = reverse("conversation_rename", kwargs={"pk": conversation.pk})
    response = signed_in.post(url, {"title": ""})
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == ""
    assert b"New chat" in signed_in.get(response["Location"]).content


def test_rename_too_long_is_refused(signed_in, conversation):
    url = reverse("conversation_rename", kwargs={"pk": conversation.pk})
    response = signed_in.post(url, {"title": "x" * 201}, **JSON)
    assert response.status_code == 400
    assert "title" in response.json()["errors"]
    assert signed_in.post(url, {"title": "x" * 201}).status_code == 400
    conversation.refresh_from_db()
    assert conversation.title == "Mine"


def test_rename_needs_post(signed_in, conversation):
    url = reverse("conversation_rename", kwargs={"pk": conversation.pk})
    assert signed_in.get(url).status_code == 405


def test_delete_removes_it_and_tells_the_users_tabs(
    signed_in, conversation, user_events, django_capture_on_commit_callbacks
):
    _add_messages(conversation, 4)
    url = reverse("conversation_delete", kwargs={"pk": conversation.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(url, **JSON)
    assert response.json() == {"deleted": conversation.pk}
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert user_events() == {"type": "conversation.deleted", "conversation": conversation.pk}


def test_delete_by_form_goes_back_to_a_new_chat(signed_in, conversation):
    response = signed_in.post(reverse("conversation_delete", kwargs={"pk": conversation.pk}))
    assert response.status_code == 302
    assert response["Location"] == reverse("chat")


# Settings


def test_settings_are_saved(
    signed_in, conversation, user_events, django_capture_on_commit_callbacks, fake_mistral
):
    url = reverse("conversation_settings", kwargs={"pk": conversation.pk})
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(url, VALID_SETTINGS, **JSON)
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.model == "mistral-large-latest"
    assert conversation.system_prompt == "Be brief."
    assert conversation.temperature == 0.7
    assert conversation.top_p == 0.9
    assert conversation.max_tokens == 512
    assert conversation.random_seed == 42
    assert conversation.safe_prompt is True
    assert response.json()["settings"]["temperature"] == 0.7
    assert user_events()["conversation"]["model"] == "mistral-large-latest"


def test_blank_settings_mean_the_models_defaults(signed_in, conversation):
    url = reverse("conversation_settings", kwargs={"pk": conversation.pk})
    response = signed_in.post(url, {"model": "mistral-small-latest"})
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.temperature is None
    assert conversation.top_p is None
    assert conversation.max_tokens is None
    assert conversation.random_seed is None
    assert conversation.safe_prompt is False


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "1.6", "less than or equal to 1.5"),
        ("temperature", "-0.1", "greater than or equal to 0"),
        ("temperature", "warm", "Enter a number"),
        ("top_p", "0", "greater than 0"),
        ("top_p", "1.01", "less than or equal to 1"),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("max_tokens", "2.5", "Enter a whole number"),
        ("random_seed", "-1", "greater than or equal to 0"),
        ("random_seed", str(2**31), "less than or equal to"),
        ("model", "", "required"),
        ("model", "bad model!", "Choose a model"),
    ],
)
def test_invalid_settings_are_refused_with_a_message(
    signed_in, conversation, field, value, message
):
    url = reverse("conversation_settings", kwargs={"pk": conversation.pk})
    response = signed_in.post(url, VALID_SETTINGS | {field: value}, **JSON)
    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"][field])
    conversation.refresh_from_db()
    assert conversation.model == "mistral-small-latest"
    assert conversation.temperature is None


def test_settings_with_a_model_no_server_offers_are_refused(signed_in, conversation, fake_mistral):
    url = reverse("conversation_settings", kwargs={"pk": conversation.pk})
    for model in ("mistral-huge-latest", "mistral-embed", "lab/llama3.2:1b"):
        response = signed_in.post(url, VALID_SETTINGS | {"model": model}, **JSON)
        assert response.status_code == 400
        assert "No model server of this site offers" in response.json()["errors"]["model"][0]
    conversation.refresh_from_db()
    assert conversation.model == "mistral-small-latest"
    assert conversation.system_prompt == ""


def test_settings_keep_a_model_no_longer_listed(signed_in, conversation, fake_mistral):
    """A model an endpoint stopped offering does not lock its conversation's settings."""
    conversation.model = "mistral-retired-2401"
    conversation.save()
    url = reverse("conversation_settings", kwargs={"pk": conversation.pk})
    response = signed_in.post(url, {"model": "mistral-retired-2401", "temperature": "0.2"})
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.temperature == 0.2


def test_invalid_settings_by_form_show_the_page_with_errors(signed_in, conversation):
    url = reverse("conversation_settings", kwargs={"pk": conversation.pk})
    response = signed_in.post(url, VALID_SETTINGS | {"temperature": "9"})
    assert response.status_code == 400
    assert b"less than or equal to 1.5" in response.content
    assert signed_in.get(url).status_code == 200


# Models


@pytest.mark.django_db(transaction=True)
async def test_models_json_lists_the_chat_models(async_client, user, fake_mistral):
    await async_client.aforce_login(user)
    response = await async_client.get(reverse("models_json"))
    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["models"]}
    assert "mistral-embed" not in models
    assert models["mistral-large-latest"]["vision"] is True
    assert models["codestral-latest"]["max_context_length"] == 256000


# Static files


async def test_static_files_are_served_without_debug(async_client, settings):
    settings.DEBUG = False  # and nothing collected: found where they are (SERVESTATIC_USE_FINDERS)
    response = await async_client.get("/static/js/app.js")
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == "text/javascript"
    assert b"import" in b"".join([chunk async for chunk in response.streaming_content])
    assert (await async_client.get("/static/js/missing.js")).status_code == 404


async def test_static_files_keep_nosniff_and_the_content_security_policy(async_client, settings):
    settings.DEBUG = False
    response = await async_client.get("/static/css/app.css")
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == "text/css"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response["Content-Security-Policy"]
