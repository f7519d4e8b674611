"""Which model server answers each model: Mistral's API, any OpenAI-compatible server named in
the settings, or the small model inside this process. The registry is built from settings,
the one place here that reads them; the clients it holds import nothing from Django.

What an id says (its provider's name, the id upstream, its label) is read in
modelservers/model_ids.py; which configured server answers it is decided here. Mistral is
used when MISTRAL_API_KEY is set or MISTRAL_BASE_URL is not Mistral's; the local model
unless LOCAL_MODEL_ENABLED is off. With neither a key nor an endpoint, new conversations
start on the local model, and no request leaves the machine.

Over 400 lines: the registry, the lookups on it (which provider, which card, which window,
the default model) and the picker's catalogue all read the same providers and their cached
model lists; apart, each would hold half of the registry's rules.
"""

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from conversations.errors import ChatError, ModelUnavailable
from conversations.modelservers import model_ids
from conversations.modelservers.errors import ModelServerError
from conversations.modelservers.local_model import LocalModelClient
from conversations.modelservers.mistral import MistralClient, body_message, build_chat_body
from conversations.modelservers.model_ids import LOCAL, LOCAL_MODEL
from conversations.modelservers.ollama import ServedWindows
from conversations.modelservers.openai_compat import (
    ASSUMED_CONTEXT,
    build_openai_chat_body,
    openai_body_message,
    openai_model_card,
    reported_context,
)
from conversations.modelservers.results import ChatResult, ModelCard, StreamBatch

logger = logging.getLogger(__name__)

MISTRAL_DEFAULT_BASE_URL = "https://api.mistral.ai/v1"
# The context window taken for a Mistral model no list describes.
MISTRAL_ASSUMED_CONTEXT = 32768
# An endpoint's name is the first part of its models' ids, and part of environment names.
_ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
# How long the model list of one provider may hold up the picker.
_LIST_TIMEOUT = 8.0


class ConfigError(ValueError):
    """A provider setting that cannot work; the message names the setting, never a key."""


@dataclass(eq=False)
class Provider:
    """One model server: how its model ids look, the body it accepts, and its client."""

    name: str  # "mistral", "local", or the endpoint's name
    label: str  # for people, in the picker and in messages
    kind: str  # "mistral", "openai" or "local"
    # Both stream and list models alike; only a remote server is asked for titles.
    client: MistralClient | LocalModelClient
    vision_models: frozenset[str] = field(default_factory=frozenset)  # OpenAI-compatible only
    tool_models: frozenset[str] = field(default_factory=frozenset)  # the same: they call tools
    base_url: str = ""  # a remote server's, for `manage.py check`
    api_key: str = field(default="", repr=False)
    context_length: int = 0  # an endpoint's CONTEXT_LENGTH setting; 0: as its server says
    # The windows an Ollama server told through its own API, which its model list does not.
    served: ServedWindows = field(default_factory=ServedWindows, repr=False)

    @property
    def prefix(self) -> str:
        return "" if self.kind == "mistral" else f"{self.name}/"

    def upstream(self, model_id: str) -> str:
        """The id this server knows the model by."""
        return model_id[len(self.prefix) :]

    def card_for(self, cards: list[ModelCard], model_id: str) -> ModelCard | None:
        """The card of `model_id` (or of a model it is an alias of) among this provider's."""
        for card in cards:
            if model_id == card.id or model_id in (self.prefix + a for a in card.aliases):
                return card
        return None

    @property
    def build_body(self) -> Callable[..., dict]:
        """build_chat_body's arguments, turned into a body this server documents."""
        return build_chat_body if self.kind == "mistral" else build_openai_chat_body

    @property
    def build_message(self) -> Callable[[dict], dict]:
        """One message in the shape this server documents (a step's tool messages, added
        to a body already built)."""
        return body_message if self.kind == "mistral" else openai_body_message

    def stream_chat(self, body: dict) -> AsyncIterator[StreamBatch]:
        """The client's stream; an OpenAI-compatible server's model names get their prefix
        back, so the stored answer names a model the picker knows."""
        stream = self.client.stream_chat(body)
        return self._prefixed(stream) if self.kind == "openai" else stream

    async def _prefixed(self, stream: AsyncIterator[StreamBatch]) -> AsyncIterator[StreamBatch]:
        try:
            async for batch in stream:
                if batch.model:
                    batch.model = self.prefix + batch.model
                yield batch
        finally:
            await stream.aclose()

    async def complete_chat(self, body: dict) -> ChatResult:
        """One short answer (a title); only providers with a title_model are asked."""
        if not isinstance(self.client, MistralClient):
            raise ModelUnavailable("The local model writes no titles.")
        return await self.client.complete_chat(body)

    def title_model(self, model_id: str) -> str | None:
        """The model that names a conversation of `model_id`: Mistral's cheap title model,
        an endpoint's own model, or None for the local one (the question's first words do:
        a title is not worth a place in its queue)."""
        if self.kind == "mistral":
            return settings.MISTRAL_TITLE_MODEL
        return model_id if self.kind == "openai" else None

    async def models(self, *, refresh: bool = False) -> list[ModelCard]:
        """This provider's chat models, with ids as the picker shows them."""
        cards = await self.client.list_models(refresh=refresh)
        if self.kind == "mistral":
            return [card for card in cards if card.completion_chat]
        served: dict[str, int] = {}
        if self.kind == "openai" and isinstance(self.client, MistralClient):
            unknown = [c.id for c in cards if not (self.context_length or reported_context(c))]
            served = await self.served.lookup(self.client, self.base_url, unknown, refresh=refresh)
        out = []
        for card in cards:
            if self.kind == "openai":
                card = openai_model_card(
                    card,
                    vision=card.id in self.vision_models,
                    function_calling=card.id in self.tool_models,
                    context_length=self.context_length,
                    served_context=served.get(card.id, 0),
                )
            out.append(replace(card, id=self.prefix + card.id))
        return out


@dataclass(frozen=True)
class Registry:
    providers: tuple[Provider, ...]
    # Endpoints that could not be set up, by name (or the raw entry), with the reason.
    problems: tuple[tuple[str, str], ...]


_cache: tuple[str, Registry] | None = None


def registry() -> Registry:
    """The providers the settings describe; rebuilt only when they change, so each client's
    model list cache lives as long as the process."""
    global _cache
    key = repr(
        (
            settings.MISTRAL_BASE_URL,
            settings.MISTRAL_API_KEY,
            settings.MISTRAL_CONNECT_TIMEOUT,
            settings.MISTRAL_READ_TIMEOUT,
            settings.MISTRAL_MAX_RETRIES,
            settings.CHAT_ENDPOINTS,
            settings.LOCAL_MODEL_ENABLED,
            settings.LOCAL_MODEL_THREADS,
            settings.LOCAL_MODEL_MAX_TOKENS,
        )
    )
    if _cache is None or _cache[0] != key:
        _cache = (key, _build())
    return _cache[1]


def mistral_configured() -> bool:
    return bool(settings.MISTRAL_API_KEY) or (
        settings.MISTRAL_BASE_URL.rstrip("/") != MISTRAL_DEFAULT_BASE_URL
    )


def _remote(
    name: str,
    label: str,
    kind: str,
    base_url: str,
    api_key: str,
    vision_models: frozenset[str] = frozenset(),
    context_length: int = 0,
    tool_models: frozenset[str] = frozenset(),
) -> Provider:
    """A provider over HTTP: Mistral's API and OpenAI-compatible servers share MistralClient's
    transport, timeouts and retries; only their bodies and model lists differ."""
    client = MistralClient(
        base_url=base_url,
        api_key=api_key,
        connect_timeout=settings.MISTRAL_CONNECT_TIMEOUT,
        read_timeout=settings.MISTRAL_READ_TIMEOUT,
        max_retries=settings.MISTRAL_MAX_RETRIES,
    )
    return Provider(
        name,
        label,
        kind,
        client,
        vision_models,
        tool_models,
        base_url.rstrip("/"),
        api_key,
        context_length,
    )


def _build() -> Registry:
    providers: list[Provider] = []
    problems: list[tuple[str, str]] = []
    if mistral_configured():
        try:
            check_base_url(settings.MISTRAL_BASE_URL, "MISTRAL_BASE_URL")
            providers.append(
                _remote(
                    "mistral",
                    "Mistral",
                    "mistral",
                    settings.MISTRAL_BASE_URL,
                    settings.MISTRAL_API_KEY,
                )
            )
        except ConfigError as err:
            problems.append(("mistral", str(err)))
    seen = {"mistral"}
    for entry in settings.CHAT_ENDPOINTS:
        try:
            check_endpoint(entry, seen)
        except ConfigError as err:
            problems.append((entry.get("name") or "?", str(err)))
            continue
        seen.add(entry["name"])
        providers.append(
            _remote(
                entry["name"],
                entry["name"],
                "openai",
                entry["base_url"],
                entry["api_key"],
                frozenset(entry["vision_models"]),
                entry.get("context_length") or 0,
                frozenset(entry.get("tool_models") or ()),
            )
        )
    if settings.LOCAL_MODEL_ENABLED:
        client = LocalModelClient(
            threads=settings.LOCAL_MODEL_THREADS, max_tokens=settings.LOCAL_MODEL_MAX_TOKENS
        )
        providers.append(Provider(LOCAL, "This server", "local", client))
    return Registry(tuple(providers), tuple(problems))


def check_base_url(url: str, setting: str) -> None:
    """Raise ConfigError unless `url` is an http(s) URL with a host (and no key in it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{setting} must be an http:// or https:// URL with a host, like "
            f"http://127.0.0.1:11434/v1; it is {_shown(url)!r}."
        )
    if parts.username or parts.password:
        raise ConfigError(f"{setting} must not carry a user or password; set its API key.")


def _shown(url: str) -> str:
    """A URL as it may appear in a message: a password in it is cut out."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "[redacted]")
    return url[:200]


def check_endpoint(entry: dict, taken: set[str]) -> None:
    """Raise ConfigError unless a CHAT_ENDPOINTS entry has a usable name and base URL."""
    name = entry.get("name") or ""
    if not entry.get("base_url"):
        raise ConfigError(
            f"CHAT_ENDPOINTS entry {name!r} has no base URL: write name=base_url, like "
            "ollama=http://127.0.0.1:11434/v1."
        )
    if not _ENDPOINT_NAME.match(name):
        raise ConfigError(
            f"CHAT_ENDPOINTS name {name[:40]!r} must start with a letter and hold only "
            "lowercase letters, digits and '-' (at most 30)."
        )
    if name in taken or name == LOCAL:
        raise ConfigError(f"CHAT_ENDPOINTS name {name!r} is used twice or reserved.")
    check_base_url(entry["base_url"], f"The base URL of CHAT_ENDPOINTS entry {name!r}")


def provider_for(model_id: str) -> Provider:
    """The provider that answers `model_id`, or ModelUnavailable saying why none does. An
    id with a prefix no endpoint has goes to Mistral when Mistral is configured (a gateway's
    ids may hold a slash)."""
    reg = registry()
    ref = model_ids.parse(model_id)
    prefixed = ref.provider != model_ids.MISTRAL
    if prefixed:
        for provider in reg.providers:
            if provider.kind != "mistral" and provider.name == ref.provider:
                return provider
        for name, problem in reg.problems:
            if name == ref.provider:
                raise ModelUnavailable(f"{model_id} cannot be used: {problem}")
        if ref.is_local:
            raise ModelUnavailable(
                "The local model is turned off on this server. Choose another model."
            )
    for provider in reg.providers:
        if provider.kind == "mistral":
            return provider
    if prefixed:
        raise ModelUnavailable(
            f"No model server of this site offers {model_id}. Choose another model."
        )
    raise ModelUnavailable(
        f"{model_id} is one of Mistral's models, and this server has no Mistral API key. "
        "Choose another model."
    )


def offered_by(provider: Provider, model_id: str) -> bool:
    """Whether `model_id` would go to `provider` (and not to another, or nowhere)."""
    try:
        return provider_for(model_id) is provider
    except ModelUnavailable:
        return False


def default_model() -> str:
    """The model new conversations start with: CHAT_DEFAULT_MODEL if set, else Mistral's
    MISTRAL_MODEL when Mistral is configured, else the local model, else the first model the
    first OpenAI-compatible endpoint listed (once it has been listed: the picker lists them
    as a page opens, and starts a new chat on the first when the default is not among them)."""
    if settings.CHAT_DEFAULT_MODEL:
        return settings.CHAT_DEFAULT_MODEL
    if mistral_configured():
        return settings.MISTRAL_MODEL
    if settings.LOCAL_MODEL_ENABLED:
        return LOCAL_MODEL
    for provider in registry().providers:
        if provider.kind == "openai" and isinstance(provider.client, MistralClient):
            listed = provider.client.listed_models()
            if listed:
                return provider.prefix + listed[0].id
    return settings.MISTRAL_MODEL


async def model_offered(model_id: str) -> bool:
    """Whether `model_id` is one the picker could show: the default model, or one its
    provider lists (an alias included). Checked before a conversation is created with a
    model or switched to one, so no made-up id is stored or sent upstream. A provider whose
    list cannot be read now does not make its models unknown: an answer then fails with
    that server's own error, as it would have a moment later."""
    if model_id == default_model():
        return True
    try:
        provider = provider_for(model_id)
    except ModelUnavailable:
        return False
    listed = await _listed(provider)
    if isinstance(listed, ModelServerError):
        return True
    return provider.card_for(listed, model_id) is not None


async def model_card(model_id: str) -> ModelCard | None:
    """The card of `model_id` from its provider's model list (what it can do, its context
    window), None when the list does not hold it. The one place a model's capabilities are
    looked up. Raises ChatError when the provider cannot be asked, so the caller decides
    what an unknown answer means."""
    provider = provider_for(model_id)
    return provider.card_for(await provider.models(), model_id)


async def context_window(model_id: str) -> tuple[int, bool]:
    """How many tokens `model_id` reads at once, and whether that is assumed rather than
    known: from its card; for a model no list describes, 32,768 for Mistral's (its smallest
    current window) and the conservative ASSUMED_CONTEXT for any other server's."""
    try:
        card = await model_card(model_id)
    except ChatError as err:
        logger.info("Reading the context window of %s failed (%s)", model_id, err.code)
        card = None
    if card is not None:
        return card.max_context_length, card.context_assumed
    if model_ids.parse(model_id).provider == model_ids.MISTRAL:
        return MISTRAL_ASSUMED_CONTEXT, True
    return ASSUMED_CONTEXT, True


async def can_see_images(model_id: str) -> bool:
    """Whether `model_id` reads images (Mistral's `capabilities.vision`; for an
    OpenAI-compatible endpoint, its VISION_MODELS setting; the local model never does)."""
    card = await model_card(model_id)
    return card is not None and card.vision


async def can_call_tools(model_id: str) -> bool:
    """Whether `model_id` is given tools (Mistral's `capabilities.function_calling`; for an
    OpenAI-compatible endpoint, its TOOL_MODELS setting; never the local model)."""
    if provider_for(model_id).kind == "local":
        return False
    card = await model_card(model_id)
    return card is not None and card.function_calling


async def refresh_models(model_id: str) -> None:
    """Forget the model list of `model_id`'s provider (a model it no longer offers)."""
    try:
        await provider_for(model_id).models(refresh=True)
    except ChatError as err:
        logger.info("Refreshing the model list failed (%s)", err.code)


async def model_catalog() -> dict[str, list[dict[str, Any]]]:
    """Every configured provider's chat models with what they can do, and a line for each
    provider that could not be listed (misconfigured, unreachable, key refused), so the
    picker says so instead of leaving its models out without a word."""
    reg = registry()
    results = await asyncio.gather(*(_listed(p) for p in reg.providers))
    models: list[dict[str, Any]] = []
    problems = [{"provider": name, "message": problem} for name, problem in reg.problems]
    for provider, result in zip(reg.providers, results, strict=True):
        if isinstance(result, ModelServerError):
            problems.append({"provider": provider.label, "message": _listing_problem(result)})
            continue
        models.extend(_model_data(provider, card) for card in result)
    default = default_model()
    if not any(m["id"] == default for m in models):
        models.insert(0, _unlisted(default))
    return {"models": models, "problems": problems}


async def _listed(provider: Provider) -> list[ModelCard] | ModelServerError:
    try:
        async with asyncio.timeout(_LIST_TIMEOUT):
            return await provider.models()
    except ModelServerError as err:
        logger.info("Listing the models of %s failed (%s)", provider.name, err.code)
        return err
    except TimeoutError:
        return ModelServerError("The model server did not answer in time.")


def _listing_problem(err: ModelServerError) -> str:
    if err.code == "auth":
        return f"{err.message} Check its API key."
    if err.code in ("connection_failed", "timeout"):
        return f"{err.message} Its models cannot be offered until it is reachable."
    return err.message


def _model_data(provider: Provider, card: ModelCard) -> dict[str, Any]:
    return {
        "id": card.id,
        "name": card.name or card.id,
        "description": card.description,
        "provider": provider.label,
        "author": model_ids.author(card.id),
        "safe_prompt": provider.kind == "mistral",
        "local": provider.kind == "local",
        "vision": card.vision,
        "function_calling": card.function_calling,
        "max_context_length": card.max_context_length or None,
        "context_assumed": card.context_assumed,
    }


def _unlisted(model_id: str) -> dict[str, Any]:
    """The default model when no provider listed it: still offered, capabilities unknown."""
    return {
        "id": model_id,
        "name": model_id,
        "description": "",
        "provider": "",
        "author": model_ids.author(model_id),
        "safe_prompt": model_ids.parse(model_id).provider == model_ids.MISTRAL,
        "local": False,
        "vision": False,
        "function_calling": False,
        "max_context_length": None,
        "context_assumed": False,
    }
