"""The chat page at three looks (light, dark, a 375 px phone), checked for layout faults, and
an answer that called a tool, its step opened. With UPDATE_SCREENSHOTS=1 the pictures are
written to docs/ for the README."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT, last_answer, send, sign_up, wait_connected
from tests.fake_mistral import Reply, split_tokens

pytestmark = pytest.mark.e2e

ANSWER = """Merge them with two indices, always taking the smaller head. \
It runs in **O(n + m)** time and keeps the merge *stable*.

```python
def merge(left: list[int], right: list[int]) -> list[int]:
    \"\"\"Merge two sorted lists into one sorted list.\"\"\"
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            out.append(left[i]); i += 1
        else:
            out.append(right[j]); j += 1
    return out + left[i:] + right[j:]
```

A few notes:

- `heapq.merge` does the same lazily, for any number of inputs.
- For two lists, `sorted(a + b)` is often fast enough thanks to Timsort.
"""


def _screenshot_dir(tmp_path: Path) -> Path:
    return ROOT / "docs" if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path


def _conversation(page: Page, fake) -> None:
    sign_up(page, "ada")
    for title in ("Plan a trip to Lyon", "What is a monad?", "Regex for ISO dates"):
        fake.enqueue(Reply.tokens(split_tokens("Sure.")))
        fake.enqueue(Reply.tokens([title]))
        send(page, title)
        expect(last_answer(page)).to_have_attribute("data-status", "complete")
        expect(page.locator("#conv-title")).to_have_text(title)
        page.get_by_role("link", name="New chat").click()
        # A new page, whose socket must be open before the next question is typed.
        expect(page.locator("#conv-title")).to_have_text("New chat")
        wait_connected(page)
    fake.enqueue(Reply.tokens(split_tokens(ANSWER), usage=(24, 182)))
    fake.enqueue(Reply.tokens(["Merging two sorted lists"]))
    send(page, "How do I merge two sorted lists in Python?")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("#conv-title")).to_have_text("Merging two sorted lists")
    expect(page.locator("#model-list [role=option]")).to_have_count(6)  # with the local model


def test_chat_page_looks_right_in_light_dark_and_on_a_phone(page: Page, fake, tmp_path):
    out = _screenshot_dir(tmp_path)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")
    _conversation(page, fake)
    page.locator("#composer-input").blur()
    page.mouse.move(640, 790)
    page.screenshot(animations="disabled", path=out / "screenshot-light.png")

    page.emulate_media(color_scheme="dark")
    page.screenshot(animations="disabled", path=out / "screenshot-dark.png")

    page.get_by_role("button", name="Model: mistral-small-latest").click()
    expect(page.get_by_role("listbox")).to_be_visible()
    page.screenshot(animations="disabled", path=out / "screenshot-models.png")
    page.keyboard.press("Escape")
    expect(page.get_by_role("listbox")).not_to_be_visible()

    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 812})
    expect(page.locator("#sidebar")).not_to_be_visible()
    expect(page.get_by_role("button", name="Open the sidebar")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(animations="disabled", path=out / "screenshot-phone.png")

    page.get_by_role("button", name="Open the sidebar").click()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.get_by_role("link", name="What is a monad?")).to_be_visible()
    page.screenshot(animations="disabled", path=out / "screenshot-phone-sidebar.png")
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).not_to_be_visible()


def test_tool_answer_looks_right_with_a_step_opened(page: Page, fake, tmp_path):
    out = _screenshot_dir(tmp_path)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")
    sign_up(page, "grace")
    page.get_by_role("button", name="Tools").click()
    menu = page.get_by_role("dialog", name="Tools")
    menu.get_by_role("switch", name="Date and time").check()
    page.screenshot(animations="disabled", path=tmp_path / "tools-menu-light.png")
    page.keyboard.press("Escape")

    fake.enqueue(Reply.tool_calls([("current_datetime", {"timezone": "Europe/Paris"})]))
    fake.enqueue(
        Reply.tokens(
            split_tokens(
                "It is **Tuesday 8 December 2026**, a little after 1 a.m. in Paris. "
                "The Louvre opens at 9:00, so you have time for a good night's sleep first."
            ),
            usage=(412, 38),
        )
    )
    fake.enqueue(Reply.tokens(["Today in Paris"]))
    send(page, "What day is it in Paris, and is the Louvre open now?")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    expect(page.locator("#conv-title")).to_have_text("Today in Paris")
    answer.locator(".tool-call summary").click()
    expect(answer.locator(".tool-result")).to_be_visible()
    page.locator("#composer-input").blur()
    page.mouse.move(640, 790)
    page.screenshot(animations="disabled", path=out / "screenshot-tool-answer.png")

    page.emulate_media(color_scheme="dark")
    page.screenshot(animations="disabled", path=tmp_path / "tool-answer-dark.png")
    page.get_by_role("button", name="Tools").click()
    page.screenshot(animations="disabled", path=tmp_path / "tools-menu-dark.png")
    page.keyboard.press("Escape")

    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 812})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(animations="disabled", path=tmp_path / "tool-answer-phone.png")
    page.get_by_role("button", name="Tools").click()
    expect(menu).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(animations="disabled", path=tmp_path / "tools-menu-phone.png")
