"""Structured answers in the browser: the format chosen in the settings dialog, a JSON answer
shown highlighted with its schema mark, copied or downloaded as a .json file. With
UPDATE_SCREENSHOTS=1 the answer is kept as docs/screenshot-json-answer.png."""

import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT, last_answer, send, sign_up
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "colour": {"type": "string"},
        "age": {"type": "integer"},
        "favourite_foods": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "colour", "age", "favourite_foods"],
}


def test_schema_answer_is_highlighted_marked_and_downloadable(page: Page, fake, tmp_path):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Hello."]))
    fake.enqueue(Reply.tokens(["Cats"]))
    send(page, "Hi")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")

    page.get_by_role("button", name="Conversation settings").click()
    dialog = page.get_by_role("dialog", name="Conversation settings")
    dialog.get_by_label("Answer format").select_option(label="JSON matching a schema")
    dialog.get_by_label("Schema name").fill("cat")
    dialog.get_by_label("JSON schema").fill(json.dumps(SCHEMA, indent=2))
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog).to_be_hidden()

    answer = '{"name": "Miso", "colour": "black", "age": 3, "favourite_foods": ["tuna", "chicken"]}'
    fake.enqueue(Reply.tokens(split_tokens(answer)))
    send(page, "Describe a cat as JSON")
    message = last_answer(page)
    expect(message).to_have_attribute("data-status", "complete")
    expect(message.locator("code.language-json .hl-nt").first).to_have_text('"name"')
    expect(message.locator(".msg-note")).to_have_text("Matches the schema “cat”.")
    sent = [r.json for r in fake.requests if r.json and r.json.get("stream")][-1]
    assert sent["response_format"]["json_schema"]["name"] == "cat"

    download_button = message.get_by_role("button", name="Download the answer as a .json file")
    expect(download_button).to_be_visible()
    with page.expect_download() as info:
        download_button.click()
    download = info.value
    assert download.suggested_filename == "answer.json"
    assert json.loads(Path(download.path()).read_text()) == json.loads(answer)

    out = ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else Path(tmp_path)
    page.locator("#composer-input").blur()
    page.mouse.move(640, 790)
    page.screenshot(animations="disabled", path=out / "screenshot-json-answer.png")

    # The dialog shows what was saved after a reload.
    page.reload()
    page.get_by_role("button", name="Conversation settings").click()
    expect(dialog.get_by_label("Answer format")).to_have_value("json_schema")
    expect(dialog.get_by_label("Schema name")).to_have_value("cat")
