"""The context window an Ollama server serves, which its OpenAI-compatible /v1/models leaves
out; with nothing from Django.

Ollama says it only through its own API, beside /v1: `POST {root}/api/show` with
`{"model": name}` answers with `parameters`, the Modelfile's parameters as text lines
(`num_ctx                        8192`). `num_ctx` is there only when the Modelfile sets it;
without it Ollama serves its default (2,048 tokens before 0.6, 4,096 since, or
OLLAMA_CONTEXT_LENGTH), which it does not report, so that counts as not said and the
assumed window and its warnings apply. `model_info["<arch>.context_length"]` is the window
the model was trained for, often many times what is served, and is never taken.

Which server is Ollama: `GET {root}/api/version`, Ollama's own JSON answer
(`{"version": "0.6.5"}`), asked only when some model's window is still unknown, so a
server that reports its windows (vLLM) or an endpoint with CONTEXT_LENGTH set is asked
nothing more. The model list's `owned_by` is no proof (it is the model's namespace:
"library" only for Ollama's own library, a user's name or a host otherwise), and the root's
"Ollama is running" is plain text that a proxy in front may answer for itself.

Every lookup is worth doing without: a failure, a slow answer or a server that is not
Ollama leaves the windows unknown, and the model list stands as it was.
"""

import asyncio
import re
import time

from conversations.modelservers.errors import ModelServerError
from conversations.modelservers.mistral import MistralClient

# How long each lookup may take. The version comes first, then every model at once, so a
# listing waits at most twice this: the picker, which waits a few seconds for a whole model
# list, still gets the list itself in time.
LOOKUP_DEADLINE = 2.5
_NUM_CTX = re.compile(r"^num_ctx\s+(\d+)\s*$", re.MULTILINE)


def ollama_root(base_url: str) -> str | None:
    """Where Ollama's own API lives: the base URL without its /v1 (Ollama serves its
    OpenAI-compatible API nowhere else), or None for a base URL that cannot be Ollama's."""
    base_url = base_url.rstrip("/")
    return base_url.removesuffix("/v1") if base_url.endswith("/v1") else None


def num_ctx(show: object) -> int:
    """The served window an /api/show answer states (its `parameters`' num_ctx), else 0."""
    parameters = show.get("parameters") if isinstance(show, dict) else None
    found = _NUM_CTX.search(parameters) if isinstance(parameters, str) else None
    return int(found.group(1)) if found else 0


async def served_windows(client: MistralClient, base_url: str, names: list[str]) -> dict[str, int]:
    """The window Ollama serves for each of `names` (ids as its /v1/models lists them), 0
    where it does not say or does not answer in time; all 0 when the server is not Ollama.
    Asks /api/version once, then /api/show once per model, all at the same time."""
    root = ollama_root(base_url)
    if root is None or not names:
        return dict.fromkeys(names, 0)
    version = await _answer(client, "GET", f"{root}/api/version")
    if not (isinstance(version, dict) and isinstance(version.get("version"), str)):
        return dict.fromkeys(names, 0)
    shows = await asyncio.gather(
        *(_answer(client, "POST", f"{root}/api/show", {"model": name}) for name in names)
    )
    return {name: num_ctx(show) for name, show in zip(names, shows, strict=True)}


async def _answer(client: MistralClient, method: str, url: str, body: dict | None = None) -> object:
    """The JSON answer, or None when the call fails or is late: each model alone, so one
    that cannot be read leaves the others' windows known."""
    try:
        async with asyncio.timeout(LOOKUP_DEADLINE):
            return await client.fetch_json(method, url, body)
    except (ModelServerError, TimeoutError):
        return None


class ServedWindows:
    """One endpoint's Ollama windows, each model asked once and the answers kept as long as
    the model list is (its client's `models_ttl`): a model card is built for every question
    and every picker, and should not cost a request each time. A failed lookup is kept too,
    so an unreachable /api/show does not delay every question."""

    def __init__(self, ttl: float = 300.0) -> None:
        self._ttl = ttl
        self._known: dict[str, int] = {}
        self._since = 0.0

    async def lookup(
        self, client: MistralClient, base_url: str, names: list[str], *, refresh: bool = False
    ) -> dict[str, int]:
        """The served window of each of `names` that Ollama states (models it does not say
        are left out)."""
        now = time.monotonic()
        if refresh or now - self._since >= self._ttl:
            self._known, self._since = {}, now
        missing = [name for name in names if name not in self._known]
        if missing:
            self._known.update(await served_windows(client, base_url, missing))
        return {name: self._known[name] for name in names if self._known.get(name)}
