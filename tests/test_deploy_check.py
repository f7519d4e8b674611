"""`manage.py check --deploy` with the production settings docs/deploy.md documents, read
from that page, in a process of their own (settings are read once, at start-up)."""

import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def documented_settings() -> dict[str, str]:
    """The KEY=value lines of the first sh block under "## Settings" in docs/deploy.md."""
    page = (ROOT / "docs" / "deploy.md").read_text()
    section = page.split("## Settings", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    found = {}
    for line in block.splitlines():
        key, _, value = line.split("#", 1)[0].strip().partition("=")
        found[key] = value
    return found


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 (fixed arguments)
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def production_env(tmp_path, fake_mistral) -> dict[str, str]:
    env = documented_settings()
    assert env["CHAT_HTTPS"] == "true"
    env |= {
        "PATH": "/usr/bin:/bin",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATA_DIR": str(tmp_path),
        # The key's model server, probed by check --deploy: the fake one, not the internet.
        "MISTRAL_API_KEY": "test-key",
        "MISTRAL_BASE_URL": fake_mistral.base_url,
    }
    return env


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path, fake_mistral):
    result = check_deploy(production_env(tmp_path, fake_mistral))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_https(tmp_path, fake_mistral):
    env = production_env(tmp_path, fake_mistral) | {"CHAT_HTTPS": "false"}
    result = check_deploy(env)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr


def test_with_https_plain_requests_are_redirected_but_health_probes_are_not(client, settings, db):
    """What CHAT_HTTPS turns on, as a request over plain http to daphne meets it."""
    settings.SECURE_SSL_REDIRECT = True
    settings.REDIS_URL = ""
    page = client.get("/accounts/login/")
    assert page.status_code == 301
    assert page["Location"] == "https://testserver/accounts/login/"
    assert client.get("/health").status_code in (200, 503)  # answered, not redirected
