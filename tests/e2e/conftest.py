"""Browser journeys against the real site: a daphne subprocess (plain `daphne`, as in
production, so static files and websockets go the production way), its own database in a
temporary DATA_DIR (or, with DATABASE_URL on PostgreSQL, a new database beside that one),
and the fake Mistral server running in this process.

Debian's Chromium drives the pages; Playwright's own browser download is not used.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from psycopg import sql

from tests.fake_mistral import FakeMistral

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
API_KEY = "test-key"
PASSWORD = "a-long-test-password-7"


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: a browser journey against a live daphne server")


@pytest.hookimpl(trylast=True)  # after pytest-randomly has shuffled
def pytest_collection_modifyitems(config, items):
    # Playwright's sync API keeps an event loop running in this thread from the first browser
    # test to the end of the session, and no async test can run after that: these go last.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _process_state():
    """Replaces tests/conftest.py's async reset of in-process generation state: here the
    site runs in another process, and Playwright's sync API owns this thread's event loop."""
    yield


@pytest.fixture(scope="session")
def fake_model_server():
    with FakeMistral() as server:
        server.api_key = API_KEY
        yield server


@pytest.fixture
def fake(fake_model_server):
    """The fake model server with no queued replies; a gate left closed by a test is
    opened at its end so no answer waits on it."""
    fake_model_server.reset()
    fake_model_server.api_key = API_KEY
    gates: list[threading.Event] = []
    fake_model_server.gates = gates
    yield fake_model_server
    for gate in gates:
        gate.set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (our own URL)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)  # polling with a deadline, not waiting a fixed time
    raise RuntimeError(f"daphne did not answer within 30 s:\n{log.read_text()}")


@contextlib.contextmanager
def own_database(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """env for a site with a database of its own: SQLite in its DATA_DIR, or, when
    DATABASE_URL points at PostgreSQL, a new database on that server, dropped after."""
    url = urlsplit(env.get("DATABASE_URL", ""))
    if url.scheme not in ("postgres", "postgresql"):
        # Named even so: a .env beside manage.py could name another database.
        yield {**env, "DATABASE_URL": f"sqlite:///{Path(env['DATA_DIR']) / 'db.sqlite3'}"}
        return
    name = f"{url.path.strip('/') or 'chat'}_e2e_{uuid.uuid4().hex[:8]}"
    server = urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield {**env, "DATABASE_URL": urlunsplit(url._replace(path=f"/{name}"))}
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def site_env(fake_model_server, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of the site's processes: its own DATA_DIR (secret key, files) and
    database."""
    data_dir = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "MISTRAL_BASE_URL": fake_model_server.base_url,
        "MISTRAL_API_KEY": API_KEY,
        "MISTRAL_MAX_RETRIES": "0",
        "CHAT_SAVE_INTERVAL": "0.2",
        # Journeys share users and ask quickly; tests/test_limits.py proves the limits.
        "CHAT_QUESTIONS_PER_MINUTE": "0",
        "CHAT_ANSWERS_AT_ONCE": "0",
        "CHAT_CONVERSATIONS_PER_MINUTE": "0",
        "CHAT_UPLOADS_PER_DAY": "0",
        "CHAT_UPLOAD_BYTES_PER_DAY": "0",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "PYTHONUNBUFFERED": "1",
    }
    with own_database(env) as env:
        yield env


@pytest.fixture(scope="session")
def site_shell(site_env):
    """Runs Python in a `manage.py shell` of the site, to set up rows a test needs in bulk."""

    def run(code: str) -> None:
        subprocess.run(  # noqa: S603 (fixed arguments)
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=site_env,
            check=True,
            capture_output=True,
        )

    return run


@contextlib.contextmanager
def served_site(env: dict[str, str]) -> Iterator[str]:
    """Migrates env's fresh database (see own_database) and runs the site under plain daphne
    with its job worker beside it, as in production; yields its URL and stops both after."""
    data_dir = Path(env["DATA_DIR"])
    subprocess.run(  # noqa: S603 (fixed arguments)
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = _free_port()
    log_path = data_dir / "daphne.log"
    daphne = shutil.which("daphne", path=str(Path(sys.executable).parent)) or "daphne"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [sys.executable, "manage.py", "worker", "--no-reload", "--interval", "0.1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [daphne, "-b", "127.0.0.1", "-p", str(port), "chatsite.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(f"{url}/accounts/login/", process, log_path)
        yield url
    finally:
        for running in (process, worker):
            running.terminate()
        for running in (process, worker):
            try:
                running.wait(10)
            except subprocess.TimeoutExpired:
                running.kill()
                running.wait(10)


@pytest.fixture(scope="session")
def live_server_url(site_env):
    """The site under plain daphne, DEBUG off, with a fresh database."""
    with served_site(site_env) as url:
        yield url


@pytest.fixture(scope="session")
def base_url(live_server_url):
    return live_server_url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    }


@pytest.fixture
def page(page: Page) -> Page:
    """Every page fails its test on a console error or an uncaught exception (a CSP
    violation shows up as one), and its default waits are short enough to fail fast."""
    errors = _watched(page, timeout=10_000)
    yield page
    assert [e for e in errors if not _expected_console_error(e)] == []


@contextlib.contextmanager
def site_page(browser: Browser, base_url: str, *, timeout: int = 10_000) -> Iterator[Page]:
    """A page of a site of its own (other settings), watched as `page` is."""
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    errors = _watched(page, timeout=timeout)
    yield page
    context.close()
    assert [e for e in errors if not _expected_console_error(e)] == []


def _watched(page: Page, *, timeout: int) -> list[str]:
    """The console errors and uncaught exceptions of `page`, as they come."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.set_default_timeout(timeout)
    expect.set_options(timeout=timeout)
    return errors


def _expected_console_error(text: str) -> bool:
    # A socket cut on purpose, and 404s, 400s and lockouts (429) a test asks for, are logged
    # by Chromium.
    return "WebSocket" in text or any(
        f"status of {code}" in text for code in ("404 (Not Found)", "400 (Bad Request)", "429 (")
    )


def sign_up(page: Page, username: str | None = None) -> str:
    """A new account through the form; the page ends on the chat, connected."""
    username = username or f"user{uuid.uuid4().hex[:10]}"
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Ask anything")).to_be_visible()
    wait_connected(page)
    return username


def wait_connected(page: Page) -> None:
    expect(page.locator("body")).to_have_attribute("data-connection", "open")


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def last_answer(page: Page):
    return page.locator(".msg--assistant").last


@pytest.fixture
def gate(fake):
    """A closed gate: a reply given it holds after its first token until `gate.set()`."""
    event = threading.Event()
    fake.gates.append(event)
    return event
