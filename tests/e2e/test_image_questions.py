"""Asking about images in the browser: attach with the file picker and by pasting, see the
thumbnails, send, watch the answer stream, open an image large, and find it after a reload."""

import base64

import pytest
from playwright.sync_api import Page, expect

from tests import imagefiles
from tests.e2e.conftest import last_answer, sign_up
from tests.fake_mistral import Reply

pytestmark = pytest.mark.e2e

PASTE = """([name, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "image/png" }));
  const box = document.querySelector("#composer-input");
  const init = { clipboardData: data, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent("paste", init));
}"""


def test_attach_by_picker_and_paste_then_ask(page: Page, fake, gate):
    sign_up(page)
    photo = imagefiles.jpeg((3000, 2000), gps=True)
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach images").click()
    chooser.value.set_files([{"name": "street.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    screenshot = imagefiles.png((640, 400))
    page.evaluate(PASTE, ["pasted.png", base64.b64encode(screenshot).decode()])

    tray = page.locator("#attachments .attachment")
    expect(tray).to_have_count(2)
    expect(page.locator('#attachments .attachment[data-state="ready"] img')).to_have_count(2)
    expect(tray.first.locator("img")).to_have_js_property("complete", True)
    assert tray.first.locator("img").evaluate("img => img.naturalWidth") == 1540

    fake.enqueue(Reply.tokens(["A street", " and a screenshot."], gate=gate))
    box = page.get_by_label("Message", exact=True)
    box.fill("What are these?")
    box.press("Enter")

    expect(page.locator("#attachments")).to_be_hidden()
    question = page.locator(".msg--user").last
    expect(question.locator(".msg-image img")).to_have_count(2)
    expect(question.locator(".msg-image-size").first).to_contain_text("sent as 1540×1027")
    expect(question.locator(".msg-image-size").nth(1)).to_contain_text("sent as 640×400")
    answer = last_answer(page)
    expect(answer.locator(".msg-body")).to_have_text("A street")
    gate.set()
    expect(answer.locator(".msg-body")).to_have_text("A street and a screenshot.")
    expect(answer).to_have_attribute("data-status", "complete")

    request = next(r for r in fake.requests if r.json and r.json.get("stream"))
    parts = request.json["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    assert [(i.mime, i.size, i.metadata) for i in request.images] == [
        ("image/jpeg", (1540, 1027), ()),
        ("image/png", (640, 400), ()),
    ]

    question.locator(".msg-image-open").first.click()
    dialog = page.locator("#image-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#image-dialog-caption")).to_contain_text("sent as 1540×1027")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    page.reload()
    expect(page.locator(".msg--user .msg-image img")).to_have_count(2)
    expect(page.locator(".msg--user .msg-image-size").first).to_contain_text("sent as 1540×1027")


def test_removed_attachment_is_not_sent_and_a_bad_file_is_named(page: Page, fake):
    sign_up(page)
    page.locator("#attach-input").set_input_files(
        [
            {"name": "keep.png", "mimeType": "image/png", "buffer": imagefiles.png()},
            {"name": "drop.png", "mimeType": "image/png", "buffer": imagefiles.png((50, 50))},
            {"name": "evil.svg", "mimeType": "image/svg+xml", "buffer": imagefiles.SVG},
        ]
    )
    expect(page.locator("#notice")).to_have_text(
        "evil.svg: not an image we accept. Send JPEG, PNG, WEBP, GIF or HEIC images."
    )
    expect(page.locator('#attachments .attachment[data-state="ready"]')).to_have_count(2)
    page.get_by_role("button", name="Remove drop.png").click()
    expect(page.locator("#attachments .attachment")).to_have_count(1)

    box = page.get_by_label("Message", exact=True)
    box.fill("Just the one")
    box.press("Enter")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    request = next(r for r in fake.requests if r.json and r.json.get("stream"))
    assert [i.size for i in request.images] == [(320, 200)]
