"""Your data: export one, some or all conversations (JSON with the whole tree and settings,
a zip with the files, Markdown of the branch shown), streamed; import this site's export or
ChatGPT's conversations.json as new conversations, all or nothing each, with a report; and
hostile files refused with a clear error."""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from conversations.models import Conversation, Message, ToolCall
from tests.helpers import message_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def tree(user, title="Colours") -> Conversation:
    """A question, an answer regenerated (two versions, the first shown), a follow-up."""
    conversation = Conversation.objects.create(
        owner=user,
        title=title,
        model="mistral-small-latest",
        temperature=0.4,
        tools=["builtin:datetime"],
    )
    question = message_create(conversation=conversation, role="user", text="Name a colour")
    first = message_create(
        conversation=conversation, role="assistant", text="**Blue**.", parent=question
    )
    message_create(conversation=conversation, role="assistant", text="Green.", parent=question)
    follow = message_create(conversation=conversation, role="user", text="Why?", parent=first)
    last = message_create(
        conversation=conversation,
        role="assistant",
        text="It calms.",
        parent=follow,
        status="stopped",
    )
    ToolCall.objects.create(
        message=last,
        step=1,
        call_id="abcdefghi",
        name="current_datetime",
        status="done",
        result="now",
    )
    conversation.shown_leaf = last
    conversation.save()
    return conversation


def export(client, **query) -> bytes:
    response = client.get(reverse("export"), query)
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content)


def import_(client, data: bytes, name="export.json"):
    upload = SimpleUploadedFile(name, data)
    return client.post(reverse("import"), {"file": upload}, HTTP_ACCEPT="application/json")


def shape(exported: dict) -> list:
    return [
        (
            c["title"],
            c["settings"],
            c["shown_leaf"],
            [(m["id"], m["parent"], m["role"], m["text"], m["status"]) for m in c["messages"]],
        )
        for c in exported["conversations"]
    ]


def test_export_then_import_gives_the_same_tree_back(signed_in, user):
    tree(user)
    first = json.loads(export(signed_in, format="json"))
    assert first["format"] == "mistral-chat-export" and first["version"] == 1
    [conversation] = first["conversations"]
    assert [m["parent"] for m in conversation["messages"]] == [None, 1, 1, 2, 4]
    assert conversation["shown_leaf"] == 5
    assert conversation["messages"][4]["tool_calls"][0]["name"] == "current_datetime"
    assert conversation["settings"]["temperature"] == 0.4

    report = import_(signed_in, json.dumps(first).encode()).json()
    assert report["source"] == "mistral-chat"
    assert [(r["title"], r["messages"]) for r in report["imported"]] == [("Colours", 5)]
    assert report["skipped"] == []
    assert Conversation.objects.filter(owner=user).count() == 2  # a new one, nothing replaced

    again = json.loads(
        export(signed_in, format="json", conversations=str(report["imported"][0]["id"]))
    )
    assert shape(again) == shape(first)
    imported = Conversation.objects.get(pk=report["imported"][0]["id"])
    page = signed_in.get(reverse("conversation", args=[imported.pk])).content.decode()
    assert "<strong>Blue</strong>" in page and "It calms." in page and "Green." not in page


def test_export_holds_only_the_users_own_conversations(signed_in, user, other_user):
    mine = tree(user)
    theirs = tree(other_user, title="Secret")
    mixed = signed_in.get(reverse("export"), {"conversations": f"{mine.pk},{theirs.pk}"})
    assert mixed.status_code == 404  # another user's id, as everywhere
    exported = json.loads(export(signed_in, format="json", conversations=str(mine.pk)))
    assert [c["title"] for c in exported["conversations"]] == ["Colours"]
    everything = json.loads(export(signed_in, format="json"))
    assert [c["title"] for c in everything["conversations"]] == ["Colours"]


def test_markdown_holds_the_branch_shown(signed_in, user):
    tree(user)
    text = export(signed_in, format="markdown").decode()
    assert text.startswith("# Colours\n")
    assert "**You:**\n\nName a colour" in text and "It calms." in text
    assert "Green." not in text


def test_the_zip_holds_the_export_and_the_files_and_imports_too(signed_in, user):
    from tests.test_shares import _attach

    conversation = tree(user)
    question = conversation.messages.filter(role="user").first()
    _attach(user, question)
    data = export(signed_in, format="zip")
    archive = zipfile.ZipFile(io.BytesIO(data))
    exported = json.loads(archive.read("export.json"))
    [image] = exported["conversations"][0]["messages"][0]["attachments"]
    assert image["name"] == "red.png" and image["file"].startswith("files/")
    assert archive.read(image["file"]).startswith(b"\x89PNG")
    report = import_(signed_in, data, "mistral-chat.zip").json()
    assert [r["messages"] for r in report["imported"]] == [5]


def test_a_large_export_streams_in_pieces(signed_in, user):
    for n in range(120):
        c = Conversation.objects.create(owner=user, title=f"C{n}", model="m")
        message_create(conversation=c, role="user", text="x" * 100)
    response = signed_in.get(reverse("export"), {"format": "json"})
    pieces = list(response.streaming_content)
    assert len(pieces) > 100  # one per conversation, not one whole document
    assert len(json.loads(b"".join(pieces))["conversations"]) == 120


CHATGPT = [
    {
        "title": "Trip",
        "create_time": 1700000000.0,
        "current_node": "a2",
        "mapping": {
            "root": {"id": "root", "message": None, "parent": None, "children": ["sys"]},
            "sys": {
                "id": "sys",
                "message": {
                    "author": {"role": "system"},
                    "content": {"content_type": "text", "parts": [""]},
                    "metadata": {"is_visually_hidden_from_conversation": True},
                },
                "parent": "root",
                "children": ["q1"],
            },
            "q1": {
                "id": "q1",
                "message": {
                    "author": {"role": "user"},
                    "content": {"content_type": "text", "parts": ["Where to?"]},
                    "metadata": {},
                },
                "parent": "sys",
                "children": ["a1", "t1"],
            },
            "a1": {
                "id": "a1",
                "message": {
                    "author": {"role": "assistant"},
                    "content": {"content_type": "text", "parts": ["Lyon."]},
                    "metadata": {"model_slug": "gpt-4o"},
                },
                "parent": "q1",
                "children": [],
            },
            "t1": {
                "id": "t1",
                "message": {
                    "author": {"role": "tool"},
                    "content": {"content_type": "text", "parts": ["search results"]},
                    "metadata": {},
                },
                "parent": "q1",
                "children": ["a2"],
            },
            "a2": {
                "id": "a2",
                "message": {
                    "author": {"role": "assistant"},
                    "content": {"content_type": "text", "parts": ["Annecy."]},
                    "metadata": {"model_slug": "gpt-4o"},
                },
                "parent": "t1",
                "children": [],
            },
        },
    },
    {"title": "Broken", "mapping": "not a tree"},
]


def test_chatgpt_conversations_json_comes_in_as_a_tree(signed_in, user):
    report = import_(signed_in, json.dumps(CHATGPT).encode(), "conversations.json").json()
    assert report["source"] == "chatgpt"
    assert [(r["title"], r["messages"]) for r in report["imported"]] == [("Trip", 3)]
    assert report["left_out"] == 1  # the tool's turn
    assert report["skipped"] == [{"title": "Broken", "reason": "it has no message tree (mapping)"}]
    conversation = Conversation.objects.get(pk=report["imported"][0]["id"])
    messages = list(conversation.messages.order_by("id"))
    assert [(m.role, m.text) for m in messages] == [
        ("user", "Where to?"),
        ("assistant", "Lyon."),
        ("assistant", "Annecy."),
    ]
    assert [m.parent_id for m in messages[1:]] == [messages[0].pk, messages[0].pk]  # versions
    assert conversation.shown_leaf_id == messages[2].pk  # ChatGPT's current node
    assert messages[1].notice == "Imported from ChatGPT (gpt-4o)."
    # ChatGPT's own export zip works as well.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("conversations.json", json.dumps(CHATGPT))
        archive.writestr("chat.html", "<html></html>")
    report = import_(signed_in, buffer.getvalue(), "chatgpt-export.zip").json()
    assert len(report["imported"]) == 1


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", b" " * 150_000_000)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"not json at all", "not_json", "it is not valid JSON"),
        (nested(100_000), "not_json", "nested too deeply"),
        (b'{"hello": "world"}', "not_an_export", "neither an export of this site"),
        (b'{"format": "mistral-chat-export", "version": 99}', "unknown_version", "(99)"),
        (b"PK\x03\x04 broken", "bad_zip", "the zip file is damaged"),
        (bomb(), "zip_bomb", "inflates far beyond any real export"),
    ],
)
def test_a_hostile_or_broken_file_is_refused_and_stores_nothing(
    signed_in, user, data, code, message
):
    response = import_(signed_in, data, "upload.json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and message in error["message"]
    assert error["message"].startswith("upload.json: ")
    assert not Conversation.objects.filter(owner=user).exists()


def test_bad_conversations_are_skipped_whole_and_the_good_ones_kept(signed_in, user):
    good = {
        "title": "Good",
        "messages": [{"id": 1, "parent": None, "role": "user", "text": "hi"}],
    }
    export = {
        "format": "mistral-chat-export",
        "version": 1,
        "conversations": [
            good,
            "not an object",
            {"title": "Orphan", "messages": [{"id": 1, "parent": 7, "role": "user", "text": "x"}]},
            {"title": "Typed", "messages": [{"id": 1, "parent": None, "role": "user", "text": 5}]},
            {
                "title": "Huge",
                "messages": [{"id": 1, "parent": None, "role": "user", "text": "x" * 400_001}],
            },
            {
                "title": "Role",
                "messages": [{"id": 1, "parent": None, "role": "system", "text": "x"}],
            },
        ],
    }
    report = import_(signed_in, json.dumps(export).encode()).json()
    assert [r["title"] for r in report["imported"]] == ["Good"]
    assert report["skipped"] == [
        {"title": "Imported conversation 2", "reason": "it is not an object"},
        {"title": "Orphan", "reason": "a message comes before its parent"},
        {"title": "Typed", "reason": "a message's text is not text"},
        {"title": "Huge", "reason": "a message's text is longer than 400,000 characters"},
        {"title": "Role", "reason": "a message has the role 'system'"},
    ]
    assert list(Conversation.objects.filter(owner=user).values_list("title", flat=True)) == ["Good"]
    assert Message.objects.filter(conversation__owner=user).count() == 1


def test_export_and_import_need_an_account(client):
    assert client.get(reverse("export")).status_code == 302
    assert client.post(reverse("import")).status_code == 302
    assert client.get(reverse("data")).status_code == 302
