"""Asking about a document in the browser: attach a PDF, watch it being read page by page,
see how it will be sent, ask about page 2 and open the citation to page 2."""

import threading

import pytest
from playwright.sync_api import Page, expect

from tests import documentfiles
from tests.e2e.conftest import last_answer, sign_up
from tests.fake_mistral import Reply

pytestmark = pytest.mark.e2e

PAGES = [
    "Quarterly report. Revenue grew by twelve percent in the first quarter of the year.",
    "Page two explains that the Lyon office opened in March with forty engineers on staff.",
    None,  # a scanned page: read by OCR, which the test holds until it has seen the progress
]


def test_upload_pdf_watch_progress_ask_and_open_the_citation(page: Page, fake):
    ocr_gate = threading.Event()
    fake.gates.append(ocr_gate)
    fake.ocr_text = lambda index: "Signed by the board." if ocr_gate.wait(15) else ""
    sign_up(page)
    page.locator("#doc-attach-input").set_input_files(
        [{"name": "report.pdf", "mimeType": "application/pdf", "buffer": documentfiles.pdf(PAGES)}]
    )

    item = page.locator("#doc-tray .doc-item")
    expect(item).to_have_attribute("data-state", "reading")
    expect(item.locator(".doc-item-status")).to_contain_text("of 3")
    expect(item.locator("progress")).to_be_visible()
    ocr_gate.set()
    expect(item).to_have_attribute("data-state", "ready")
    expect(item.locator(".doc-item-status")).to_contain_text("3 pages")
    expect(page.locator("#doc-preview")).to_contain_text("Full text of 1 document")
    expect(page.locator("#doc-preview")).to_contain_text("tokens")

    fake.enqueue(Reply.tokens(["It opened in March ", "[report.pdf, p. 2]."]))
    box = page.get_by_label("Message", exact=True)
    box.fill("What does page 2 say about Lyon?")
    box.press("Enter")

    question = page.locator(".msg--user").last
    expect(question.locator(".msg-doc-name")).to_have_text("report.pdf")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    citation = answer.locator("a.cite")
    expect(citation).to_have_text("[report.pdf, p. 2]")
    expect(citation).to_have_attribute("data-page", "2")

    request = next(r for r in fake.requests if r.json and r.json.get("stream"))
    text = request.json["messages"][-1]["content"][0]["text"]
    assert '[Document "report.pdf", page 2]\n' + PAGES[1] in text
    assert '[Document "report.pdf", page 3]\nSigned by the board.' in text

    citation.click()
    dialog = page.locator("#doc-page-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#doc-page-heading")).to_have_text("report.pdf, page 2 of 3")
    expect(dialog.locator("#doc-page-text")).to_contain_text("Lyon office opened in March")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.reload()  # the stored answer keeps its link
    expect(last_answer(page).locator("a.cite")).to_have_attribute("data-page", "2")
