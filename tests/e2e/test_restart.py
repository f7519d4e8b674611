"""A restart as an operator makes one: the answers a stopped process left `streaming` are
shown interrupted, with their text, as soon as the new process runs, before any tab opens a
socket (its pages and the admin read the rows)."""

import subprocess
import sys
import time

import httpx

from tests.e2e.conftest import ROOT, own_database, served_site

# A user and a signed-in session, made in a `manage.py shell` of the site: `user` and
# `session` are there for the lines after it. The session names the last backend, Django's
# own (axes's comes first to count failures; it signs no one in).
SIGNED_IN = """
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
user = get_user_model().objects.create_user("someone", password="pw-someone-1")
session = import_module(settings.SESSION_ENGINE).SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
"""

SETUP = (
    SIGNED_IN
    + """
from conversations.models import Conversation, Message
conversation = Conversation.objects.create(owner=user, model="mistral-small-latest")
question = Message.objects.create(
    conversation=conversation, role="user", text="Tell me everything"
)
answer = Message.objects.create(
    conversation=conversation, role="assistant", text="Half of **every**", status="streaming",
    parent=question,
)
print(conversation.pk, answer.pk, session.session_key)
"""
)


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(  # noqa: S603 (fixed arguments)
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_a_new_process_shows_answers_left_running_as_interrupted_before_any_socket(
    site_env, tmp_path
):
    with own_database({**site_env, "DATA_DIR": str(tmp_path)}) as env:
        manage(env, "migrate", "--noinput", "-v", "0")
        # What a process killed mid-answer leaves behind.
        conversation, answer, session = manage(env, "shell", "-c", SETUP).split()[-3:]
        with served_site(env) as url:
            cookies = {"sessionid": session}
            deadline = time.monotonic() + 10
            while True:
                page = httpx.get(f"{url}/c/{conversation}/", cookies=cookies).text
                if 'data-status="interrupted"' in page or time.monotonic() > deadline:
                    break
                time.sleep(0.2)

    assert f'id="message-{answer}"' in page
    assert 'data-status="interrupted"' in page
    assert 'data-status="streaming"' not in page
    assert "<strong>every</strong>" in page  # the text it had, kept
    assert "The server restarted while this answer was being written." in page
