"""Documents uploaded at the same moment on the default install (SQLite, daphne and the job
worker writing to one file) are all accepted and all read: none fails with "database is
locked", as 3 in 12 did when reading, counting and writing shared one transaction that
took its write lock late (issue 20)."""

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.documentfiles import docx_file, pdf
from tests.e2e.conftest import own_database, served_site
from tests.e2e.test_restart import SIGNED_IN, manage

SETUP = SIGNED_IN + "print(session.session_key)\n"

UPLOADS = 12


def document(index: int) -> tuple[str, bytes, str]:
    words = [
        f"Page {p} of upload {index}: " + "lighthouse keepers log the tides. " * 40
        for p in range(3)
    ]
    if index % 3 == 0:
        return f"notes-{index}.pdf", pdf(words), "application/pdf"
    if index % 3 == 1:
        return (
            f"notes-{index}.docx",
            docx_file([[w] for w in words]),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        )
    return f"notes-{index}.txt", "\n\n".join(words).encode(), "text/plain"


def test_documents_uploaded_together_are_all_read(site_env, tmp_path):
    with own_database({**site_env, "DATA_DIR": str(tmp_path)}) as env:
        manage(env, "migrate", "--noinput", "-v", "0")
        session = manage(env, "shell", "-c", SETUP).split()[-1]
        with served_site(env) as url, contextlib.ExitStack() as stack:
            client = httpx.Client(base_url=url, cookies={"sessionid": session}, timeout=30)
            stack.enter_context(client)
            client.get("/")  # the CSRF cookie
            token = client.cookies["csrftoken"]

            def upload(index: int) -> httpx.Response:
                with httpx.Client(base_url=url, cookies=client.cookies, timeout=30) as own:
                    return own.post(
                        "/documents/",
                        files={"file": document(index)},
                        headers={"X-CSRFToken": token, "Referer": f"{url}/"},
                    )

            with ThreadPoolExecutor(UPLOADS) as pool:
                responses = list(pool.map(upload, range(UPLOADS)))
            assert [r.status_code for r in responses] == [201] * UPLOADS, [
                r.text for r in responses if r.status_code != 201
            ]
            ids = [r.json()["document"]["id"] for r in responses]

            deadline = time.monotonic() + 60
            while True:
                states = [client.get(f"/documents/{i}/").json()["document"] for i in ids]
                if all(s["status"] in ("ready", "failed") for s in states):
                    break
                assert time.monotonic() < deadline, [s["status"] for s in states]
                time.sleep(0.3)

    assert [(s["name"], s["status"], s.get("error", "")) for s in states] == [
        (s["name"], "ready", "") for s in states
    ]
