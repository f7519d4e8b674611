"""llama.cpp's OpenAI-compatible server, for real: llama-cpp-python's bundled one
(`python -m llama_cpp.server`) on the GGUF the project already ships (SmolLM2-135M-Instruct).

The fake servers speak the protocol as we read it; this one shows what a server people
actually run does: its chat templates, its streams without usage, its context window, what
it does when a client goes away. Each variant runs in a subprocess on a free port of
127.0.0.1, started once for the whole test run and stopped at its end; everything it prints
goes to a log file, whose path is in every error and whose lines written during a test are
shown when that test fails.

    with LlamaServer(OWN_TEMPLATE, model=find_model_file(), log_path=...) as server:
        server.base_url, server.model_id
"""

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CONTEXT_TOKENS = 2048
START_WITHIN = 90.0  # loading the model on a busy shared machine


@dataclass(frozen=True)
class Variant:
    """How the server is started: which chat template turns messages into a prompt, and
    what it calls the model."""

    name: str
    chat_format: str | None = None  # None: the chat template inside the GGUF
    alias: str | None = None  # None: the server names the model by its file path


OWN_TEMPLATE = Variant("own-template")
CHATML = Variant("chatml", chat_format="chatml", alias="smollm2-chatml")


def model_in_hf_cache(model: Path, root: Path) -> Path:
    """`model` linked where Hugging Face's cache would keep it, so a server started without
    an alias names it by a long path (well over 100 characters) wherever the checkout lives."""
    snapshot = (
        root
        / "huggingface"
        / "hub"
        / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
        / "snapshots"
        / "5f1c8a8f0a3c4b9e2d7e6f1a0b9c8d7e6f5a4b3c"
    )
    snapshot.mkdir(parents=True, exist_ok=True)
    link = snapshot / model.name
    if not link.exists():
        link.symlink_to(model)
    return link


class LlamaServer:
    """One `python -m llama_cpp.server` process."""

    def __init__(self, variant: Variant, *, model: Path, log_path: Path) -> None:
        self.variant = variant
        self.model = model
        self.log_path = log_path
        self.port: int | None = None
        self.model_id = ""  # as the server lists it in GET /v1/models
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--n_ctx",
            str(CONTEXT_TOKENS),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_threads",
            "1",  # the machine is shared; one thread writes ~40 tokens a second
            "--use_mlock",
            "False",  # locking 100 MB in memory needs a limit test machines rarely grant
            # By default a new request cuts the one streaming. Off, an answer the app leaves
            # running upstream holds up the next request, so a test can see it.
            "--interrupt_requests",
            "False",
        ]
        if self.variant.chat_format:
            command += ["--chat_format", self.variant.chat_format]
        if self.variant.alias:
            command += ["--model_alias", self.variant.alias]
        return command

    def start(self) -> "LlamaServer":
        self.port = _free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.command())}\n".encode())
            log.flush()
            self._process = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed args)
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )
        try:
            self.model_id = self._wait_until_listed()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_listed(self) -> str:
        """Poll GET /v1/models until the server lists its model; fail with the log's tail
        if the process exits or the deadline passes."""
        deadline = time.monotonic() + START_WITHIN
        while True:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"llama.cpp's server exited while starting.\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if response.status_code == 200:
                    return response.json()["data"][0]["id"]
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"llama.cpp's server did not answer within {START_WITHIN:.0f}s.\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)  # polling with a deadline, not waiting a fixed time

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int, *, lines: int = 80) -> str:
        """The last `lines` lines the server wrote after `offset`, with where the rest is."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            text = ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- llama.cpp server ({self.variant.name}), log {self.log_path} ---\n{tail}"

    def log_tail(self) -> str:
        return self.log_since(0, lines=40)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
