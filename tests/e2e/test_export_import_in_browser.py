"""Export and import in the browser: export everything as JSON from Your data, import the
file back, and the imported conversation has the same tree (its versions too)."""

import json

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import last_answer, send, sign_up
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e


def test_export_then_import_brings_the_same_tree_back(page: Page, fake, live_server_url, tmp_path):
    sign_up(page)
    fake.enqueue(Reply.tokens(split_tokens("Blue.")))
    fake.enqueue(Reply.tokens(["Colours"]))
    send(page, "Name a colour")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    fake.enqueue(Reply.tokens(["Green."]))
    last_answer(page).get_by_role("button", name="Regenerate answer").click()
    expect(last_answer(page).locator(".msg-versions-count")).to_have_text("2 / 2")

    page.goto(f"{live_server_url}/data/")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export everything").click()
    path = tmp_path / "export.json"
    download.value.save_as(path)
    exported = json.loads(path.read_text())
    assert [m["text"] for m in exported["conversations"][0]["messages"]] == [
        "Name a colour",
        "Blue.",
        "Green.",
    ]

    page.get_by_label("File to import").set_input_files(str(path))
    page.get_by_role("button", name="Import", exact=True).click()
    report = page.get_by_role("status")
    expect(report).to_contain_text("Imported 1 conversation")
    report.get_by_role("link", name="Colours").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Green.")
    expect(last_answer(page).locator(".msg-versions-count")).to_have_text("2 / 2")
    last_answer(page).get_by_role("button", name="Previous version").click()
    expect(last_answer(page).locator(".msg-body")).to_have_text("Blue.")
