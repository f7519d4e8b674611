"""The production shape, for real: Chromium over TLS to nginx running the shipped
deploy/nginx.conf, in front of two daphne processes started as deploy/chat@.service starts
them, on PostgreSQL and Redis. Only ports, the certificate and the log folder are swapped.

Needs Debian's nginx (scripts/test installs it), PostgreSQL at DATABASE_URL (else
127.0.0.1:5432) and Redis at REDIS_URL (else 127.0.0.1:6379); skipped when one is missing,
except under CI, where that fails.
"""

import contextlib
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
import trustme
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    ROOT,
    _free_port,
    _wait_until_serving,
    last_answer,
    own_database,
    send,
    sign_up,
    wait_connected,
)
from tests.fake_mistral import Reply

pytestmark = pytest.mark.e2e

DEPLOY = ROOT / "deploy"
POSTGRES = "postgres://postgres@127.0.0.1:5432/chat"
REDIS = "redis://127.0.0.1:6379/14"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI this test must run: {reason}")
    pytest.skip(reason)


def _servers() -> tuple[str, str]:
    """PostgreSQL's and Redis's URLs: the run's own when it has them, else the usual ones."""
    database = os.environ.get("DATABASE_URL", "")
    if urlsplit(database).scheme not in ("postgres", "postgresql"):
        database = POSTGRES
    redis_url = os.environ.get("REDIS_URL") or REDIS
    server = urlunsplit(urlsplit(database)._replace(path="/postgres"))  # the database may be new
    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.Error as exc:
        _unavailable(f"needs PostgreSQL at {server}: {str(exc).splitlines()[0]}")
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        _unavailable(f"needs Redis at {redis_url}: {exc}")
    return database, redis_url


def _nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        _unavailable("needs nginx (apt-get install nginx; scripts/test installs it)")
    return found


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def daphne_command(port: int) -> list[str]:
    """ExecStart of deploy/chat@.service for `port`, with this virtualenv's daphne."""
    unit = (DEPLOY / "chat@.service").read_text()
    [line] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    program, *args = shlex.split(line.removeprefix("ExecStart="))
    assert Path(program).name == "daphne"
    return [
        str(Path(sys.executable).parent / "daphne"),
        *(a.replace("%i", str(port)) for a in args),
    ]


@contextlib.contextmanager
def daphne(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            daphne_command(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(f"{url}/health", process, log)
        yield url
    finally:
        _stop(process)


def nginx_config(folder: Path, *, upstreams: list[int], https: int, http: int) -> str:
    """deploy/nginx.conf with this test's ports, certificate and log folder, inside the few
    lines of a main configuration that Debian's /etc/nginx/nginx.conf would give it."""
    shipped = (DEPLOY / "nginx.conf").read_text()
    swaps = [
        ("server 127.0.0.1:8001", f"server 127.0.0.1:{upstreams[0]}"),
        ("server 127.0.0.1:8002", f"server 127.0.0.1:{upstreams[1]}"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("listen [::]:80;", ""),
        ("/etc/letsencrypt/live/chat.example.org/", f"{folder}/"),
        ("/var/log/nginx/", f"{folder}/"),
    ]
    for old, new in swaps:
        assert old in shipped, f"deploy/nginx.conf no longer has {old!r}: update this test"
        shipped = shipped.replace(old, new)
    temp = "\n".join(
        f"    {kind}_temp_path {folder}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx would run its workers as nobody, who cannot enter pytest's folders.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""{user}
worker_processes 1;
error_log {folder}/error.log;
events {{ worker_connections 512; }}
http {{
{temp}
{shipped}
}}
"""


@contextlib.contextmanager
def nginx(folder: Path, config: str, https: int, ca: trustme.CA) -> Iterator[str]:
    conf = folder / "nginx.conf"
    conf.write_text(config)
    command = [_nginx(), "-p", str(folder), "-c", str(conf)]
    subprocess.run([*command, "-t", "-q"], check=True)  # noqa: S603 (fixed arguments)
    log = folder / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 (fixed arguments)
            [*command, "-g", f"daemon off; pid {folder}/nginx.pid;"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"https://127.0.0.1:{https}"
    try:
        deadline = time.monotonic() + 15
        while get(f"{url}/health", ca)[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not serve {url}:\n{log.read_text()}")
            time.sleep(0.05)  # polling with a deadline
        yield url
    finally:
        _stop(process)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(url: str, ca: trustme.CA | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET, redirects not followed; 0 when nothing answers."""
    context = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(context)
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}, b""


@pytest.fixture(scope="module")
def behind_nginx(fake_model_server, tmp_path_factory):
    """Two daphne processes on one PostgreSQL database and Redis, behind nginx over TLS.
    Yields nginx's URL, the CA its certificate comes from, and each process's log."""
    database, redis_url = _servers()
    folder = tmp_path_factory.mktemp("nginx")
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        folder / "privkey.pem"
    )
    shutil.copy(folder / "privkey.pem", folder / "fullchain.pem")  # key and chain in one file
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path_factory.mktemp("site")),
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "MISTRAL_BASE_URL": fake_model_server.base_url,
        "MISTRAL_API_KEY": "test-key",
        "MISTRAL_MAX_RETRIES": "0",
        "CHAT_SAVE_INTERVAL": "0.2",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "PYTHONUNBUFFERED": "1",
    }
    ports = [_free_port(), _free_port()]
    https, http = _free_port(), _free_port()
    logs = [folder / f"daphne-{port}.log" for port in ports]
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(own_database(env))
        subprocess.run(  # noqa: S603 (fixed arguments)
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        for port, log in zip(ports, logs, strict=True):
            stack.enter_context(daphne(env, port, log))
        config = nginx_config(folder, upstreams=ports, https=https, http=http)
        url = stack.enter_context(nginx(folder, config, https, ca))
        yield {"url": url, "ca": ca, "logs": logs, "http": f"http://127.0.0.1:{http}"}


@pytest.fixture
def browser_page(browser: Browser, behind_nginx) -> Iterator[Page]:
    """A page of a new context that speaks to nginx (its certificate from the test's own CA,
    so errors are ignored); fails the test on a console error other than a socket's."""
    context = browser.new_context(base_url=behind_nginx["url"], ignore_https_errors=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "WebSocket" not in msg.text else None
        ),
    )
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    yield page
    context.close()
    assert errors == []


def socket_counts(logs: list[Path]) -> tuple[list[int], int]:
    """Sockets each daphne holds open, and how many were ever opened, from their access logs
    (on stdout, as under systemd)."""
    opened, open_now = 0, []
    for log in logs:
        text = log.read_text(errors="replace")
        connects = len(re.findall(r"\bWSCONNECT /ws/chat/", text))
        opened += connects
        open_now.append(connects - len(re.findall(r"\bWSDISCONNECT /ws/chat/", text)))
    return open_now, opened


def on_the_other_process(tab: Page, logs: list[Path]) -> None:
    """Moves `tab`'s socket until each process holds one of the two. least_conn counts the
    requests in flight as well, so a socket opened while a page loads may land beside the
    first; a lone reconnect goes to the process that holds none."""

    def both_open() -> tuple[list[int], int] | None:
        counts = socket_counts(logs)
        return counts if sum(counts[0]) == 2 else None

    for _ in range(5):
        open_now, opened = wait_for(both_open, "both tabs' sockets")
        if open_now == [1, 1]:
            return
        tab.evaluate("window.chatSocket.close()")  # the page reconnects by itself
        wait_for(lambda: socket_counts(logs)[1] > opened, "a reconnect")  # noqa: B023
        wait_connected(tab)
    raise AssertionError(f"the sockets stayed on one process: {socket_counts(logs)[0]}")


def wait_for(condition, what: str, within: float = 10.0):
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.05)  # polling with a deadline
    return result


def test_health_through_nginx_reports_postgres_and_redis(behind_nginx):
    status, headers, body = get(f"{behind_nginx['url']}/health", behind_nginx["ca"])
    report = json.loads(body)
    assert status == 200
    assert (report["database"]["vendor"], report["database"]["ok"]) == ("postgresql", True)
    assert report["redis"]["ok"] is True
    assert headers["Strict-Transport-Security"] == "max-age=31536000"

    status, headers, _ = get(f"{behind_nginx['http']}/health")
    assert status == 301
    assert headers["Location"] == "https://127.0.0.1/health"


def test_a_conversation_across_two_processes_behind_nginx(
    browser_page: Page, behind_nginx, fake, gate
):
    page, logs = browser_page, behind_nginx["logs"]
    sign_up(page)  # a form posted over https through the proxy: CSRF accepts its origin
    assert any(c["name"] == "sessionid" and c["secure"] for c in page.context.cookies())
    wait_for(lambda: sorted(socket_counts(logs)[0]) == [0, 1], "the first tab's socket")

    fake.enqueue(Reply.tokens(["Through", " the", " proxy."], gate=gate))
    fake.enqueue(Reply.tokens(["Proxied"]))  # the title
    send(page, "Hello through nginx")
    answer = last_answer(page)
    expect(answer.locator(".msg-body")).to_have_text("Through")
    expect(answer).to_have_attribute("data-status", "streaming")

    other = page.context.new_page()
    other.goto(page.url)
    wait_connected(other)
    on_the_other_process(other, logs)
    expect(last_answer(other).locator(".msg-body")).to_have_text("Through")
    expect(last_answer(other)).to_have_attribute("data-status", "streaming")

    gate.set()
    for tab in (page, other):
        expect(last_answer(tab).locator(".msg-body")).to_have_text("Through the proxy.")
        expect(last_answer(tab)).to_have_attribute("data-status", "complete")
    expect(other.locator("#conv-title")).to_have_text("Proxied")

    # A reload mid-answer picks the stream up again, whichever process it reconnects to.
    second_gate = threading.Event()
    fake.gates.append(second_gate)
    fake.enqueue(Reply.tokens(["Still", " here", " after", " reload."], gate=second_gate))
    send(other, "And again")
    expect(last_answer(page).locator(".msg-body")).to_have_text("Still")
    page.reload()
    wait_connected(page)
    expect(last_answer(page).locator(".msg-body")).to_have_text("Still")
    expect(last_answer(page)).to_have_attribute("data-status", "streaming")
    second_gate.set()
    for tab in (page, other):
        expect(last_answer(tab).locator(".msg-body")).to_have_text("Still here after reload.")
        expect(last_answer(tab)).to_have_attribute("data-status", "complete")
    expect(page.locator(".msg--assistant")).to_have_count(2)
