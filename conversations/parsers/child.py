"""A sandbox child: `python -m conversations.parsers.child <memory bytes>`, started by
sandbox.py, never by hand.

It imports the parsers, then limits itself: its address space to what the imports mapped
plus the memory budget, core dumps off, and before each call its CPU time to what it has
used plus the call's seconds (the kernel sends SIGXCPU past it, which ends the process).
Then it answers calls until its stdin closes, which is also how it ends when its parent
dies. Anything a library prints goes to stderr: stdout carries only the replies.
"""

import math
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any

from conversations.parsers import documents, images, imports, pdf
from conversations.parsers.errors import Rejected

_HEADER = struct.Struct("!Q")

TASKS: dict[str, Callable[..., Any]] = {
    "document_check": documents.check,
    "document_pages": documents.pages,
    "pdf_texts": pdf.texts,
    "pdf_page_png": pdf.page_png,
    "pdf_subset": pdf.subset,
    "image_prepare": images.prepare,
    "import_read": imports.read,
}


def main() -> None:
    budget = int(sys.argv[1])
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must not land in the replies
    requests = os.fdopen(0, "rb")
    # Ctrl-C in a terminal and a service's stop reach the whole process group: a child ends
    # when its parent closes the pipe, after the call it is in.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    mapped = _address_space()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + budget, mapped + budget))
    _send(replies, ("ready",))
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # the parent closed the pipe, or died
        task, args, seconds = pickle.loads(requests.read(_HEADER.unpack(header)[0]))  # noqa: S301 (from our parent)
        _limit_cpu(seconds)
        try:
            reply: tuple = ("ok", TASKS[task](*args))
        except Rejected as err:
            reply = ("rejected", type(err).__name__, err.code, err.message)
        except MemoryError:
            _send(replies, ("limit", "memory"))
            return  # what is left of the heap is not worth keeping
        except Exception as err:
            traceback.print_exc()
            reply = ("error", f"{type(err).__name__}: {err}")
        _send(replies, reply)


def _send(replies: Any, reply: tuple) -> None:
    payload = pickle.dumps(reply, protocol=5)
    replies.write(_HEADER.pack(len(payload)))
    replies.write(payload)
    replies.flush()


def _address_space() -> int:
    """This process's mapped address space, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _limit_cpu(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(used + seconds) + 1, resource.RLIM_INFINITY))


if __name__ == "__main__":
    main()
