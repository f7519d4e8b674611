"""A site whose only model server is an OpenAI-compatible endpoint with no model named to
see images: the image button says so before anything is uploaded, and documents still go.
Its own daphne, configured as an operator would (CHAT_ENDPOINTS alone, no Mistral key, no
local model), so the picker's model list really has no vision model in it."""

import base64
import os
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import imagefiles
from tests.e2e.conftest import own_database, served_site, sign_up, site_page
from tests.e2e.test_image_questions import PASTE
from tests.fake_mistral import FakeMistral

pytestmark = pytest.mark.e2e

REFUSAL = "No model on this server can see images."


@pytest.fixture(scope="module")
def endpoint_server():
    with FakeMistral(strict=False) as server:
        server.models = [{"id": "llama3.2:1b", "object": "model", "owned_by": "library"}]
        yield server


@pytest.fixture(scope="module")
def endpoint_site(endpoint_server, tmp_path_factory):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MISTRAL_", "CHAT_ENDPOINT", "LOCAL_MODEL"))
    }
    env |= {
        "DATA_DIR": str(tmp_path_factory.mktemp("endpoint-site")),
        "MISTRAL_API_KEY": "",  # wins over a developer's .env
        "CHAT_ENDPOINTS": f"lab={endpoint_server.base_url}",
        "CHAT_ENDPOINT_LAB_CONTEXT_LENGTH": "8192",
        "LOCAL_MODEL_ENABLED": "false",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "PYTHONUNBUFFERED": "1",
    }
    with own_database(env) as env, served_site(env) as url:
        yield url


@pytest.fixture
def endpoint_page(browser: Browser, endpoint_site):
    """A page of that site, watched as tests/e2e/conftest.py's `page` is."""
    with site_page(browser, endpoint_site) as page:
        yield page


def test_the_image_button_says_no_model_can_see_and_documents_still_go(endpoint_page: Page):
    page = endpoint_page
    posted: list[str] = []
    page.on(
        "request", lambda r: posted.append(urlsplit(r.url).path) if r.method == "POST" else None
    )
    page.on("filechooser", lambda chooser: posted.append("a file chooser opened"))
    sign_up(page)
    expect(page.locator("#model-name")).to_have_text("lab/llama3.2:1b")
    button = page.get_by_role("button", name="Attach images")
    expect(button).to_have_attribute("aria-disabled", "true")
    expect(button).to_have_attribute("title", REFUSAL)
    notice = page.locator("#notice")
    expect(notice).to_be_hidden()

    button.click(force=True)  # Playwright waits on aria-disabled; a person's click goes through
    expect(notice).to_have_text(REFUSAL)

    # An image pasted (or dropped) all the same is refused with the same words, unsent.
    page.reload()
    expect(button).to_have_attribute("aria-disabled", "true")
    expect(notice).to_be_hidden()
    page.evaluate(PASTE, ["shot.png", base64.b64encode(imagefiles.png()).decode()])
    expect(notice).to_have_text(REFUSAL)
    expect(page.locator("#attachments .attachment")).to_have_count(0)

    page.locator("#doc-attach-input").set_input_files(
        [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"The meeting is at ten."}]
    )
    item = page.locator("#doc-tray .doc-item")
    expect(item).to_have_attribute("data-state", "ready")
    expect(page.locator("#doc-preview")).to_contain_text("Full text of 1 document")
    assert "/attachments/" not in posted and "a file chooser opened" not in posted
    assert "/documents/" in posted
