"""Function calling in the browser: tools switched on in the composer's Tools menu, an
answer's tool calls as collapsible steps (tool, arguments, result, time), approval given and
refused, a reload while a tool runs, and a model that cannot call tools. Its own daphne with
the test MCP server configured as an operator would (CHAT_MCP_CONFIG), `add` asking for
approval before each run."""

import json
import re
import sys

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    ROOT,
    last_answer,
    own_database,
    send,
    served_site,
    sign_up,
    site_page,
)
from tests.fake_mistral import Reply

pytestmark = pytest.mark.e2e

MCP_SERVER = ROOT / "tests" / "mcp_tools_server.py"


@pytest.fixture(scope="module")
def tools_site(site_env, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tools-site")
    config = data_dir / "mcp.json"
    entry = {"command": sys.executable, "args": [str(MCP_SERVER)], "approval": ["add"]}
    config.write_text(json.dumps({"mcpServers": {"lab": entry}}))
    env = {**site_env, "DATA_DIR": str(data_dir), "CHAT_MCP_CONFIG": str(config)}
    with own_database(env) as env, served_site(env) as url:
        yield url


@pytest.fixture
def tools_page(browser: Browser, tools_site):
    """A page of that site, watched as tests/e2e/conftest.py's `page` is."""
    with site_page(browser, tools_site) as page:
        yield page


def switch_on(page: Page, title: str) -> None:
    """Through the Tools menu, as a person does; the menu is closed again after."""
    button = page.locator("#tools-btn")
    button.click()
    menu = page.get_by_role("dialog", name="Tools")
    expect(menu).to_be_visible()
    menu.get_by_role("switch", name=title).check()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(button).to_be_focused()


def chat_bodies(fake) -> list[dict]:
    return [r.json for r in fake.requests if r.json and r.json.get("stream")]


def test_a_tool_step_is_shown_collapsed_with_its_arguments_result_and_time(tools_page, fake):
    page = tools_page
    sign_up(page)
    tools = page.get_by_role("button", name="Tools")
    expect(tools).to_have_accessible_name("Tools, none on")
    expect(tools).to_have_attribute("aria-expanded", "false")
    # By keyboard: Enter opens it on the first switch, Space switches, Escape closes.
    tools.focus()
    page.keyboard.press("Enter")
    expect(tools).to_have_attribute("aria-expanded", "true")
    menu = page.get_by_role("dialog", name="Tools")
    switch = menu.get_by_role("switch", name="Date and time")
    expect(switch).to_be_focused()
    expect(switch).not_to_be_checked()
    expect(switch).to_have_accessible_description(re.compile("^The current date, time"))
    expect(menu.get_by_role("switch", name="add")).to_have_accessible_description(
        re.compile("asks before each run")
    )
    page.keyboard.press("Space")
    expect(switch).to_be_checked()
    expect(tools).to_have_accessible_name("Tools, 1 on")
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(tools).to_be_focused()

    fake.enqueue(Reply.tool_calls([("current_datetime", {"timezone": "Europe/Paris"})]))
    fake.enqueue(Reply.tokens(["It is ", "a fine day."]))
    fake.enqueue(Reply.tokens(["The date"]))
    send(page, "What day is it?")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    assert [t["function"]["name"] for t in chat_bodies(fake)[0]["tools"]] == ["current_datetime"]

    def check_step() -> None:
        step = answer.locator(".tool-call")
        expect(step).to_have_count(1)
        summary = step.locator("summary")
        expect(summary).to_contain_text("Date and time")
        expect(summary).to_contain_text("Built in")
        expect(step.locator(".tool-status")).to_have_text(re.compile(r"^Done · \d+ ms$"))
        arguments = step.locator(".tool-arguments")
        expect(arguments).to_be_hidden()  # collapsed until opened
        summary.click()
        expect(arguments).to_contain_text('"timezone": "Europe/Paris"')
        expect(step.locator(".tool-result")).to_contain_text("Europe/Paris")
        expect(answer.locator(".msg-body")).to_have_text("It is a fine day.")
        # The step comes before the text it led to.
        assert step.evaluate(
            "(el) => !!(el.compareDocumentPosition(el.closest('.msg').querySelector('.msg-body'))"
            " & Node.DOCUMENT_POSITION_FOLLOWING)"
        )

    check_step()
    page.reload()
    answer = last_answer(page)
    check_step()
    expect(tools).to_have_accessible_name("Tools, 1 on")
    tools.click()
    expect(menu.get_by_role("switch", name="Date and time")).to_be_checked()


def test_tools_switched_in_a_conversation_are_kept_and_every_tab_follows(tools_page, fake):
    page = tools_page
    sign_up(page)
    fake.enqueue(Reply.tokens(["Hello."]))
    fake.enqueue(Reply.tokens(["Greeting"]))
    send(page, "Hi")
    expect(last_answer(page)).to_have_attribute("data-status", "complete")
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("body")).to_have_attribute("data-connection", "open")
    other_tools = other.get_by_role("button", name="Tools")
    expect(other_tools).to_have_accessible_name("Tools, none on")

    switch_on(page, "weather")
    tools = page.get_by_role("button", name="Tools")
    expect(tools).to_have_accessible_name("Tools, 1 on")
    expect(other_tools).to_have_accessible_name("Tools, 1 on")  # told by its socket
    page.reload()
    expect(tools).to_have_accessible_name("Tools, 1 on")

    fake.enqueue(Reply.tool_calls([("lab_weather", {"city": "Lyon"})]))
    fake.enqueue(Reply.tokens(["Sunny in Lyon."]))
    send(page, "Weather in Lyon?")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete")
    expect(answer.locator(".tool-call summary")).to_contain_text("weather")
    expect(answer.locator(".tool-call summary")).to_contain_text("lab")

    tools.click()
    page.get_by_role("dialog", name="Tools").get_by_role("switch", name="weather").uncheck()
    expect(tools).to_have_accessible_name("Tools, none on")
    expect(other_tools).to_have_accessible_name("Tools, none on")
    page.reload()
    expect(tools).to_have_accessible_name("Tools, none on")


def test_a_tool_that_asks_runs_when_approved_and_not_when_refused(tools_page, fake):
    page = tools_page
    sign_up(page)
    switch_on(page, "add")

    fake.enqueue(Reply.tool_calls([("lab_add", {"a": 2, "b": 3})]))
    fake.enqueue(Reply.tokens(["2 + 3 = 5."]))
    fake.enqueue(Reply.tokens(["Sums"]))
    send(page, "What is 2 + 3?")
    answer = last_answer(page)
    step = answer.locator(".tool-call")
    expect(step.locator(".tool-status")).to_have_text("Waiting for your approval")
    expect(answer.locator(".msg-progress-text")).to_have_text("Waiting for your approval…")
    expect(step.locator(".tool-arguments")).to_contain_text('"a": 2')  # open while it waits
    step.get_by_role("button", name="Run it").click()
    expect(answer).to_have_attribute("data-status", "complete")
    expect(step.locator(".tool-status")).to_have_text(re.compile(r"^Done · "))
    expect(step.get_by_role("button", name="Run it")).to_be_hidden()
    expect(step.locator(".tool-result")).to_have_text("5")
    expect(answer.locator(".msg-body")).to_have_text("2 + 3 = 5.")

    fake.enqueue(Reply.tool_calls([("lab_add", {"a": 40, "b": 2})]))
    fake.enqueue(Reply.tokens(["I did not add them."]))
    send(page, "And 40 + 2?")
    answer = last_answer(page)
    step = answer.locator(".tool-call")
    step.get_by_role("button", name="Don’t run").click()
    expect(answer).to_have_attribute("data-status", "complete")
    expect(step.locator(".tool-status")).to_have_text("Not run: you refused it")
    expect(answer.locator(".msg-body")).to_have_text("I did not add them.")
    expect(step.get_by_role("button", name="Run it")).to_be_hidden()


def test_a_reload_while_a_tool_runs_shows_it_running_then_its_result(tools_page, fake):
    page = tools_page
    sign_up(page)
    switch_on(page, "slow")

    fake.enqueue(Reply.tool_calls([("lab_slow", {"seconds": 3})]))
    fake.enqueue(Reply.tokens(["Done waiting."]))
    fake.enqueue(Reply.tokens(["Waiting"]))
    send(page, "Wait three seconds")
    status = last_answer(page).locator(".tool-call .tool-status")
    expect(status).to_have_text("Running…")

    page.reload()
    answer = last_answer(page)
    status = answer.locator(".tool-call .tool-status")
    expect(status).to_have_text("Running…")
    expect(answer).to_have_attribute("data-status", "complete")
    expect(status).to_have_text(re.compile(r"^Done · 3\.\d s$"))
    answer.locator(".tool-call summary").click()
    expect(answer.locator(".tool-result")).to_have_text("waited 3.0 s")
    expect(answer.locator(".msg-body")).to_have_text("Done waiting.")


def test_the_menu_says_a_model_cannot_call_tools(tools_page, fake):
    page = tools_page
    sign_up(page)
    page.get_by_role("button", name="Model: mistral-small-latest").click()
    page.get_by_role("option", name="SmolLM2 135M").click()
    expect(page.locator("#model-name")).to_have_text("SmolLM2 135M — small local model")

    page.get_by_role("button", name="Tools").click()
    menu = page.get_by_role("dialog", name="Tools")
    expect(menu).to_contain_text(
        "SmolLM2 135M — small local model cannot call tools; choose a model marked tools."
    )
    expect(menu.get_by_role("switch", name="Date and time")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()

    page.get_by_role("button", name="Model: SmolLM2 135M").click()
    page.get_by_role("option", name="mistral-small-latest").click()
    page.get_by_role("button", name="Tools").click()
    expect(menu.get_by_role("switch", name="Date and time")).to_be_enabled()
    expect(menu).not_to_contain_text("cannot call tools")
