"""Whether a request fits its model's context window, and what is left out when it does not.

A server answers a prompt longer than its window with an error, or cuts it without a word;
either way the user reads something unclear, and a conversation that outgrew the window
would fail on every later question. So before a request is sent, its conversation is
counted (Mistral's tokenizer; for other servers' models an estimate, as their tokenizers
differ) and the oldest turns are left out until the rest fits, with a note for the reader.
A question that cannot fit even alone is refused with the limit named.

Counting costs: most prompts are short, and a prompt's tokens never outnumber its UTF-8
bytes, so a prompt whose bytes fit is not counted at all, and its window is not even looked
up when it is smaller than any model's.
"""

from dataclasses import dataclass
from typing import Any

from conversations.documents.reading import count_tokens
from conversations.errors import ContextTooLong
from conversations.models import Message
from conversations.selectors import PromptMessage

# What each message costs beyond its text (role and control tokens), rounded up.
PER_MESSAGE = 4
# A prompt this small fits any model's window with room for an answer: not looked into.
SMALL_PROMPT = 1024


@dataclass(frozen=True, slots=True)
class Fitted:
    history: list[PromptMessage]  # what is sent, the newest question last
    left_out: int  # earlier messages left out to fit
    prompt_tokens: int | None  # counted, when counting was needed
    note: str = ""  # for the reader, when messages were left out


def prompt_bound(
    history: list[PromptMessage], *, system_prompt: str, images: set[int], extra_tokens: int
) -> int:
    """At least as many tokens as the prompt has, from its bytes: no tokenizer."""
    total = len(system_prompt.encode()) + PER_MESSAGE + extra_tokens
    for message in history:
        total += len(message.text.encode()) + PER_MESSAGE + _image_tokens(message, images)
    return total


def fit_history(
    history: list[PromptMessage],
    *,
    system_prompt: str,
    images: set[int],
    extra_tokens: int,
    budget: int,
    limit_words: str,
) -> Fitted:
    """The newest turns of `history` (as request_plan.sendable gives it) that fit `budget`
    tokens together with the system prompt and `extra_tokens` (the documents sent with the
    newest question). Counts with the tokenizer, so call it off the event loop. Raises
    ContextTooLong, worded with `limit_words` ("mistral-small-latest's context window of
    32,768 tokens"), when the newest question does not fit alone."""
    used = (count_tokens(system_prompt) + PER_MESSAGE if system_prompt.strip() else 0) + (
        extra_tokens
    )
    *earlier, question = history
    used += _tokens(question, images)
    if used > budget:
        raise ContextTooLong(
            f"This question is about {used:,} tokens with what it carries, and {limit_words} "
            f"keeps {budget:,} for the question and the conversation before it. Shorten the "
            "question or its documents."
        )
    start = len(earlier)
    while start > 0:
        cost = _tokens(earlier[start - 1], images)
        if used + cost > budget:
            break
        used += cost
        start -= 1
    # A conversation sent from its middle starts with a question, as every server expects.
    while start < len(earlier) and earlier[start].role != Message.Role.USER:
        start += 1
    left_out = start
    note = (
        f"{left_out} earlier message{'s' if left_out != 1 else ''} left out to fit {limit_words}."
        if left_out
        else ""
    )
    return Fitted(earlier[start:] + [question], left_out, used, note)


def _tokens(message: PromptMessage, images: set[int]) -> int:
    return count_tokens(message.text) + PER_MESSAGE + _image_tokens(message, images)


def _image_tokens(message: PromptMessage, images: set[int]) -> int:
    return sum(a.tokens for a in message.images or () if a.pk in images)


def count_prompt(messages: list[dict[str, Any]], *, image_tokens: int = 0) -> int:
    """Our count of a request's prompt, from the body as sent: its text, each message's
    overhead, and `image_tokens` for the images it carries."""
    total = image_tokens
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
        total += count_tokens(content or "") + PER_MESSAGE
    return total
