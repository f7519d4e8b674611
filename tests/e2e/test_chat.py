"""What a person does in the chat: send, watch the answer stream, stop, reload, open a
second tab, lose the connection, meet a hostile answer, a failed one, and log out."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import PASSWORD, last_answer, send, sign_up, wait_connected
from tests.fake_mistral import Reply

pytestmark = pytest.mark.e2e

CONVERSATION_URL = re.compile(r"/c/(\d+)/$")


def test_signup_lands_on_an_empty_chat(page: Page):
    username = sign_up(page)
    expect(page).to_have_title("New chat · Mistral Chat")
    expect(page.locator(".account-name")).to_have_text(username)
    expect(page.get_by_role("button", name=re.compile("Explain what a monad is"))).to_be_visible()


def test_answer_grows_while_streaming_then_completes(page: Page, fake, gate):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Bonjour", " et", " bienvenue."], usage=(12, 3), gate=gate))
    fake.enqueue(Reply.tokens(["Greetings"]))  # the title, asked for after the answer
    send(page, "Say hello\nin French")

    expect(page.locator(".msg--user .bubble")).to_have_text("Say hello\nin French")
    answer = last_answer(page)
    expect(answer.locator(".msg-body")).to_have_text("Bonjour")
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(answer.locator(".msg-progress")).to_have_text("Writing…")
    expect(page.get_by_role("button", name="Stop the answer")).to_be_visible()
    expect(page).to_have_url(CONVERSATION_URL)
    expect(page.locator("#conv-list .conv")).to_have_count(1)

    gate.set()
    expect(answer.locator(".msg-body")).to_have_text("Bonjour et bienvenue.")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".msg-meta")).to_contain_text(
        "mistral-small-latest · 12 in · 3 out tokens · $0.0000042 · first token"
    )
    # The conversation's answers in all, under its title.
    expect(page.locator("#conv-totals")).to_have_text("15 tokens · $0.0000042")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(page.locator("#conv-title")).to_have_text("Greetings")
    expect(page).to_have_title("Greetings · Mistral Chat")
    expect(page.locator("#conv-list .conv-title")).to_have_text(["Greetings"])


def test_stop_keeps_the_text_so_far(page: Page, fake, gate):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Once", " upon", " a", " time"], gate=gate))
    send(page, "Tell me a story")
    answer = last_answer(page)
    expect(answer.locator(".msg-body")).to_have_text("Once")

    page.get_by_role("button", name="Stop the answer").click()
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.locator(".msg-notice-label")).to_have_text("Stopped")
    expect(answer.locator(".msg-body")).to_have_text("Once")
    expect(answer.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_reload_shows_the_history(page: Page, fake):
    sign_up(page)
    send(page, "ping")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Hello! You said: ping")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    send(page, "pong")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Hello! You said: pong")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")

    page.reload()
    expect(page.locator(".msg--user .bubble")).to_have_text(["ping", "pong"])
    expect(page.locator(".msg--assistant .msg-body")).to_have_text(
        ["Hello! You said: ping", "Hello! You said: pong"]
    )
    expect(last_answer(page).locator(".msg-meta")).to_contain_text("out tokens")
    wait_connected(page)


def test_long_deltas_arrive_whole(page: Page, fake, gate):
    """Frames of every length form (7-bit, 16-bit and 64-bit,
    chatsite/fast_path/daphne_frames.py) reach the browser intact, while streaming and in the
    final message."""
    sign_up(page)
    words = ["short ", "medium " * 40, "long " * 16000, "end."]
    fake.enqueue(Reply.tokens(words, gate=gate))
    send(page, "Write a lot")
    body = last_answer(page).locator(".msg-body")
    expect(body).to_have_text("short")
    gate.set()
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    text = body.inner_text()
    assert text.count("medium") == 40
    assert text.count("long") == 16000
    assert text.endswith("end.")


def test_a_second_tab_sees_the_same_stream(page: Page, fake, gate):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Two", " tabs,", " one", " answer."], gate=gate))
    send(page, "Hello both")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Two")

    other = page.context.new_page()
    other.goto(page.url)
    wait_connected(other)
    expect(last_answer(other).locator(".msg-body")).to_have_text("Two")
    expect(last_answer(other)).to_have_attribute("data-status", "streaming")
    expect(other.get_by_role("button", name="Stop the answer")).to_be_visible()

    gate.set()
    for tab in (page, other):
        expect(last_answer(tab).locator(".msg-body")).to_have_text("Two tabs, one answer.")
        expect(last_answer(tab)).to_have_attribute("data-status", "complete")
    expect(other.locator(".msg")).to_have_count(2)


def test_stop_from_a_second_tab(page: Page, fake, gate):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Half", " of", " it"], gate=gate))
    send(page, "Go")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Half")
    other = page.context.new_page()
    other.goto(page.url)
    wait_connected(other)
    other.get_by_role("button", name="Stop the answer").click()
    expect(last_answer(page)).to_have_attribute("data-status", "stopped")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Half")


def test_reconnect_continues_the_answer_without_gaps_or_repeats(page: Page, fake, gate):
    sign_up(page)
    words = [" word" + str(i) for i in range(1, 30)]
    fake.enqueue(Reply.tokens(["Start:", *words], interval=0.02, gate=gate))
    send(page, "Count")
    answer = last_answer(page)
    expect(answer.locator(".msg-body")).to_have_text("Start:")

    # Record whether the banner ever shows: the reconnect may be quicker than a poll.
    page.evaluate(
        """() => {
          const banner = document.getElementById("connection-banner");
          window.bannerShown = false;
          new MutationObserver(() => { if (!banner.hidden) window.bannerShown = true; })
            .observe(banner, {attributes: true});
          window.chatSocket.close();
        }"""
    )
    gate.set()  # the rest streams while this tab is away
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".msg-body")).to_have_text("Start:" + "".join(words))
    assert page.evaluate("window.bannerShown") is True
    expect(page.locator("#connection-banner")).to_be_hidden()
    wait_connected(page)


# Holds every socket of the page in CONNECTING, as a slow first connection would, until
# `window.releaseOpen()`: the real socket opens, the page hears of it only then.
HOLD_OPEN = """
(() => {
  const Real = window.WebSocket;
  let hold = true;
  const held = [];
  window.WebSocket = class extends Real {
    get readyState() { return hold ? Real.CONNECTING : super.readyState; }
    addEventListener(type, listener, options) {
      if (type !== "open") return super.addEventListener(type, listener, options);
      return super.addEventListener("open", (event) => {
        // Released later only if still open: a socket closed meanwhile never opened.
        if (hold) held.push(() => this.readyState === Real.OPEN && listener.call(this, event));
        else listener.call(this, event);
      }, options);
    }
  };
  window.releaseOpen = () => { hold = false; held.splice(0).forEach((call) => call()); };
})();
"""


def test_a_question_asked_while_the_page_connects_goes_out_when_it_opens(page: Page, fake):
    sign_up(page)
    page.add_init_script(HOLD_OPEN)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-connection", "connecting")
    send(page, "Early bird")
    box = page.get_by_label("Message", exact=True)
    expect(box).to_have_value("")
    expect(page.locator("#notice")).to_be_hidden()

    page.evaluate("window.releaseOpen()")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Hello! You said: Early bird")
    expect(page.locator(".msg--user .bubble")).to_have_text(["Early bird"])
    expect(page).to_have_url(CONVERSATION_URL)


def test_a_question_waiting_for_a_connection_that_fails_comes_back(page: Page, fake):
    sign_up(page)
    page.add_init_script(HOLD_OPEN)
    page.reload()
    send(page, "Never sent")
    expect(page.get_by_label("Message", exact=True)).to_have_value("")

    page.evaluate("window.chatSocket.close()")
    expect(page.get_by_label("Message", exact=True)).to_have_value("Never sent")
    expect(page.locator("#notice")).to_have_text("Not connected to the server yet. Reconnecting…")
    page.evaluate("window.releaseOpen()")
    wait_connected(page)
    assert [r for r in fake.requests if r.json and r.json.get("stream")] == []


def test_hostile_answer_renders_inert(page: Page, fake):
    dialogs, outside = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: outside.append(r.url) if "example.invalid" in r.url else None)
    sign_up(page)
    hostile = (
        "Look: <script>alert(1)</script> and <img src=x onerror=alert(2)>\n\n"
        "[click me](javascript:alert(3)) and ![x](http://example.invalid/leak.png)\n\n"
        '<a href="javascript:alert(4)">raw</a> <iframe src="http://example.invalid/"></iframe>\n\n'
        "The end."
    )
    fake.enqueue(Reply.tokens([hostile[:40], hostile[40:90], hostile[90:]]))
    send(page, "Be nasty")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    body = answer.locator(".msg-body")
    expect(body).to_contain_text("The end.")
    expect(body).to_contain_text("<script>alert(1)</script>")  # shown as text
    assert body.locator("script, iframe, img").count() == 0
    assert body.locator("[onerror], [href^='javascript:' i]").count() == 0
    expect(body.get_by_text("click me")).to_be_visible()
    body.get_by_text("click me").click()

    page.reload()  # the stored, server-rendered version too
    expect(last_answer(page).locator(".msg-body")).to_contain_text("The end.")
    assert last_answer(page).locator("script, iframe, img").count() == 0
    assert dialogs == []
    assert outside == []


def test_failed_answer_offers_retry_which_streams_it(page: Page, fake):
    sign_up(page)
    fake.enqueue(Reply.unauthorized())
    send(page, "Hello?")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "failed")
    notice = answer.locator(".msg-notice")
    expect(notice).to_contain_text("Couldn’t answer")
    expect(answer.locator(".msg-error-text")).not_to_be_empty()
    expect(page.get_by_role("button", name="Send")).to_be_visible()

    answer.get_by_role("button", name="Retry").click()
    expect(answer.locator(".msg-body")).to_have_text("Hello! You said: Hello?")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(notice).to_be_hidden()
    expect(page.locator(".msg")).to_have_count(2)


def test_logout_sends_the_other_tab_to_the_login_page(page: Page):
    sign_up(page)
    other = page.context.new_page()
    other.goto("/")
    wait_connected(other)

    page.locator(".account summary").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(other).to_have_url(re.compile(r"/accounts/login/\?next="))
    expect(other.get_by_role("button", name="Log in")).to_be_visible()


def test_password_change_sends_other_tabs_through_the_login(page: Page):
    sign_up(page)
    other = page.context.new_page()
    other.goto("/")
    wait_connected(other)

    page.goto("/accounts/password_change/")
    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("another-long-password-8")
    page.get_by_label("New password confirmation").fill("another-long-password-8")
    with other.expect_request(lambda r: "/accounts/login/" in r.url):
        page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    # This browser's session survives the change, so the login sends the tab back.
    expect(other).to_have_url(re.compile(r"/$"))
    wait_connected(other)


def test_another_users_conversation_is_not_found(page: Page, browser, base_url):
    sign_up(page)
    send(page, "mine")
    expect(page).to_have_url(CONVERSATION_URL)
    mine = page.url

    stranger = browser.new_context(base_url=base_url).new_page()
    sign_up(stranger)
    response = stranger.goto(mine)
    assert response.status == 404
    expect(stranger.get_by_role("heading", name="Not found")).to_be_visible()
    stranger.context.close()


def test_rename_and_delete_from_the_sidebar(page: Page, fake):
    sign_up(page)
    fake.enqueue(Reply.tokens(["Fine."]))
    fake.enqueue(Reply.tokens(["First title"]))
    send(page, "one")
    expect(page.locator("#conv-title")).to_have_text("First title")
    conv_url = page.url

    other = page.context.new_page()  # sees both changes without a reload
    other.goto("/")
    wait_connected(other)

    item = page.locator("#conv-list .conv").first
    item.hover()
    item.get_by_role("button", name="Rename First title").click()
    dialog = page.get_by_role("dialog", name="Rename conversation")
    expect(dialog.get_by_label("Title")).to_have_value("First title")
    dialog.get_by_label("Title").fill("My renamed chat")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#conv-title")).to_have_text("My renamed chat")
    expect(page.locator("#conv-list .conv-title")).to_have_text(["My renamed chat"])
    expect(other.locator("#conv-list .conv-title")).to_have_text(["My renamed chat"])

    item.get_by_role("button", name="Delete My renamed chat").click()
    dialog = page.get_by_role("dialog", name="Delete conversation?")
    expect(dialog).to_contain_text("My renamed chat")
    dialog.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#conv-list .conv")).to_have_count(0)
    expect(other.locator("#conv-list .conv")).to_have_count(0)
    # Asked beside the page, not by navigating it: its own navigation home may still be
    # under way, and a second one would cancel it (seen in CI).
    assert page.request.get(conv_url).status == 404


def test_settings_dialog_shows_errors_then_saves(page: Page, fake):
    sign_up(page)
    send(page, "hi")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")

    page.get_by_role("button", name="Conversation settings").click()
    dialog = page.get_by_role("dialog", name="Conversation settings")
    dialog.get_by_label("System prompt").fill("Answer like a pirate.")
    dialog.get_by_label("Temperature").fill("3")
    dialog.get_by_label("Top p").fill("0")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.locator("[data-field=temperature] .field-errors")).to_contain_text(
        "less than or equal to 1.5"
    )
    expect(dialog.locator("[data-field=top_p] .field-errors")).to_contain_text("greater than 0")
    expect(dialog.get_by_label("Temperature")).to_have_attribute("aria-invalid", "true")

    dialog.get_by_label("Temperature").fill("0.2")
    dialog.get_by_label("Top p").fill("0.9")
    dialog.get_by_label("Random seed").fill("42")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog).to_be_hidden()

    send(page, "again")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Hello! You said: again")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    body = [r.json for r in fake.requests if r.json and r.json.get("stream")][-1]
    assert body["messages"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["random_seed"] == 42

    page.reload()
    page.get_by_role("button", name="Conversation settings").click()
    expect(dialog.get_by_label("Temperature")).to_have_value("0.2")


def test_model_picker_lists_models_and_the_choice_is_used(page: Page, fake):
    sign_up(page)
    page.get_by_role("button", name="Model: mistral-small-latest").click()
    listbox = page.get_by_role("listbox", name="Model")
    # mistral-embed cannot chat; the small local model comes last, labelled as such.
    expect(listbox.get_by_role("option")).to_have_count(6)
    expect(listbox.get_by_role("option").last).to_contain_text("SmolLM2 135M — small local model")
    codestral = listbox.get_by_role("option", name=re.compile("codestral-latest"))
    expect(codestral).to_contain_text("250k context")
    expect(listbox.get_by_role("option", name=re.compile("mistral-large-latest"))).to_contain_text(
        "vision"
    )
    page.keyboard.press("End")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Model: codestral-latest")).to_be_focused()

    send(page, "code please")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(last_answer(page).locator(".msg-meta")).to_contain_text("codestral-latest")
    streamed = [r.json for r in fake.requests if r.json and r.json.get("stream")]
    assert streamed[-1]["model"] == "codestral-latest"

    # In a conversation, a new choice is saved for its next answers.
    page.get_by_role("button", name="Model: codestral-latest").click()
    with page.expect_response(re.compile(r"/settings/$")) as saved:
        page.get_by_role("option", name=re.compile("mistral-large-latest")).click()
    assert saved.value.ok
    expect(page.get_by_role("button", name="Model: mistral-large-latest")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Model: mistral-large-latest")).to_be_visible()


def test_copy_button_copies_the_code(page: Page, fake):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_up(page)
    fake.enqueue(Reply.tokens(["Here:\n\n```python\n", "print('hi')\n", "```\n"]))
    send(page, "code")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    answer.get_by_role("button", name="Copy python code").click()
    expect(answer.locator(".copy-code")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "print('hi')\n"


def test_composer_keys_and_example_prompts(page: Page, fake):
    sign_up(page)
    box = page.get_by_label("Message", exact=True)
    box.fill("line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("line one\nline two")
    height = box.evaluate("el => el.offsetHeight")
    box.press("Shift+Enter")
    box.press_sequentially("line three")
    assert box.evaluate("el => el.offsetHeight") > height
    box.fill("")

    page.get_by_role("button", name=re.compile("Plan a three-day trip")).click()
    expect(page.locator(".msg--user .bubble")).to_contain_text("three-day trip to Lyon")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    expect(box).to_have_value("")
    expect(page.get_by_role("heading", name="Ask anything")).to_be_hidden()


def test_sidebar_shows_fifty_then_more(page: Page, site_shell):
    username = sign_up(page)
    site_shell(
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Conversation\n"
        f"owner = get_user_model().objects.get(username={username!r})\n"
        "Conversation.objects.bulk_create(\n"
        "    Conversation(owner=owner, model='mistral-small-latest', title=f'Old chat {i}')\n"
        "    for i in range(60)\n"
        ")\n"
    )
    page.reload()
    items = page.locator("#conv-list .conv")
    expect(items).to_have_count(50)
    expect(items.first).to_have_text("Old chat 59")
    page.get_by_role("link", name="Show more").click()
    expect(items).to_have_count(60)
    expect(items.last).to_have_text("Old chat 0")
    expect(page.get_by_role("link", name="Show more")).to_have_count(0)
    items.last.get_by_role("link").click()
    expect(page).to_have_title("Old chat 0 · Mistral Chat")


def test_a_long_conversation_loads_earlier_messages_on_demand(page: Page, site_shell):
    username = sign_up(page)
    site_shell(
        "from django.contrib.auth import get_user_model\n"
        "from conversations.models import Conversation, Message\n"
        f"owner = get_user_model().objects.get(username={username!r})\n"
        "c = Conversation.objects.create(owner=owner, model='mistral-small-latest', title='Long')\n"
        "Message.objects.bulk_create(\n"
        "    Message(conversation=c, role='user' if i % 2 == 0 else 'assistant',\n"
        "            text=f'line {i}', html='' if i % 2 == 0 else f'<p>line {i}</p>',\n"
        "            status='complete')\n"
        "    for i in range(250)\n"
        ")\n"
        "rows = list(c.messages.order_by('id'))\n"
        "for before, row in zip(rows, rows[1:]):\n"
        "    row.parent = before\n"
        "Message.objects.bulk_update(rows, ['parent'])\n"
    )
    page.reload()
    page.locator("#conv-list .conv").filter(has_text="Long").get_by_role("link").click()
    messages = page.locator("#thread .msg")
    expect(messages).to_have_count(200)
    expect(messages.last).to_contain_text("line 249")
    page.get_by_role("button", name="Show earlier messages").click()
    expect(messages).to_have_count(250)
    expect(messages.first).to_contain_text("line 0")
    expect(page.get_by_role("button", name="Show earlier messages")).to_have_count(0)


def test_a_frame_too_big_for_the_server_is_closed_with_a_reason_the_page_shows(page: Page, fake):
    sign_up(page)
    closed = page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/chat/`);
            ws.onopen = () => ws.send("x".repeat(2_000_000));
            ws.onclose = (event) => resolve({code: event.code, reason: event.reason});
        })"""
    )
    assert closed["code"] == 1009
    assert "exceeds payload limit" in closed["reason"]
    # The page's own socket: its next frame is padded past the limit (JSON allows spaces).
    page.evaluate(
        """() => {
            const send = WebSocket.prototype.send;
            WebSocket.prototype.send = function (data) {
                WebSocket.prototype.send = send;
                return send.call(this, data + " ".repeat(2_000_000));
            };
        }"""
    )
    send(page, "Hello")
    expect(page.locator("#notice")).to_contain_text("too big to send")
    wait_connected(page)
    expect(page.get_by_label("Message", exact=True)).to_have_value("Hello")
    expect(page.locator(".msg--user")).to_have_count(0)


def test_the_end_of_the_thread_stays_in_view_when_the_window_narrows(page: Page, fake):
    page.set_viewport_size({"width": 1280, "height": 700})
    sign_up(page)
    for question in ("one", "two", "three"):
        fake.enqueue(Reply.tokens([f"A long answer to {question}. " * 30]))
        send(page, question)
        expect(last_answer(page)).to_have_attribute("data-status", "complete")
    page.reload()
    wait_connected(page)
    page.set_viewport_size({"width": 375, "height": 700})  # a phone: the text wraps taller
    actions = last_answer(page).locator(".msg-actions")
    expect(actions).to_be_in_viewport()
    composer_top = page.locator("#composer").bounding_box()["y"]
    box = actions.bounding_box()
    assert box["y"] + box["height"] <= composer_top  # not under the message box
