"""Images a user attaches: checked by their content, made ready for the model, and turned
into a data URL only while a request is built.

What the model gets is not what the user uploaded. Current vision models work on at most
1540×1540 pixels (Pixtral on 1024×1024) and the API only downscales anything larger, so the
copy sent is downscaled to CHAT_IMAGE_MAX_SIDE, turned upright by its EXIF orientation,
converted to RGB and stripped of every metadata block (EXIF with GPS, XMP, ICC). The original
is kept unchanged for its owner.

The decoding (parsers/images.py) runs in the sandbox (conversations/parsing.py): an image
bomb or a pathological file costs a child its limits, never this process's memory.
"""

import base64
from dataclasses import dataclass

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from conversations import parsing
from conversations.models import Attachment
from conversations.parsers.errors import ImageRejected

__all__ = ["ImageRejected"]

# Mistral's documented limits (docs: studio/conversations/vision); the known-limitations page
# says 20 MB, and we build to the stricter figure.
MAX_IMAGES_PER_REQUEST = 8
MAX_IMAGE_BYTES = 10_000_000


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An accepted upload: the original's bytes and facts, and the copy the model gets."""

    name: str
    original: bytes
    mime: str
    width: int  # upright, as a person sees it
    height: int
    sent: bytes
    sent_mime: str
    sent_width: int
    sent_height: int
    tokens: int


def check_image_upload(upload: UploadedFile) -> PreparedImage:
    """Validate an uploaded file by its content and make the model's copy, or raise
    ImageRejected. Nothing is stored here, so a rejected file leaves nothing behind."""
    name = _display_name(upload.name)
    if upload.size is not None and upload.size > MAX_IMAGE_BYTES:
        raise ImageRejected("too_large", f"{name}: {_too_large(upload.size)}")
    upload.seek(0)
    data = upload.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRejected("too_large", f"{name}: {_too_large(len(data))}")
    if not data:
        raise ImageRejected("empty", f"{name}: the file is empty.")
    return prepare_image(name=name, data=data, max_side=settings.CHAT_IMAGE_MAX_SIDE)


def prepare_image(*, name: str, data: bytes, max_side: int) -> PreparedImage:
    """Decode `data` in the sandbox and make the model's copy: upright, RGB, no metadata,
    its longer side at most `max_side`. A decompression bomb, a truncated or corrupt file,
    any other format and a file past the sandbox's limits raise ImageRejected."""
    mime, width, height, sent, sent_mime, sent_width, sent_height = parsing.parse(
        "image_prepare", name, data, max_side, name=name, rejected=ImageRejected
    )
    return PreparedImage(
        name=name,
        original=data,
        mime=mime,
        width=width,
        height=height,
        sent=sent,
        sent_mime=sent_mime,
        sent_width=sent_width,
        sent_height=sent_height,
        tokens=estimated_tokens(sent_width, sent_height),
    )


def estimated_tokens(width: int, height: int) -> int:
    """The prompt tokens an image of this size costs on current Mistral vision models
    (Large 3, Medium 3, Small 3.2+, Ministral 3): 14 px patches merged 2×2, so one token per
    28×28 px cell, plus one break token per row (the last one is the end-of-image token):
    ceil(w/28) × ceil(h/28) + ceil(h/28), after fitting into 1540×1540. This is
    mistral-common's ImageEncoder count; 1540×1155 gives 55 × 42 + 42 = 2,352. Pixtral
    (16 px patches, no merge, 1024 px) counted differently, but it is retired."""
    cell, limit = 28, 1540
    ratio = max(width / limit, height / limit)
    if ratio > 1:
        width, height = max(round(width / ratio), 1), max(round(height / ratio), 1)
    columns = (width - 1) // cell + 1
    rows = (height - 1) // cell + 1
    return columns * rows + rows


def image_data_url(attachment: Attachment) -> str:
    """The model's copy as a `data:image/<format>;base64,...` URL, the string form every
    Mistral example uses. Reads the file: call it off the event loop, and only while a
    request body is being built (base64 is never stored)."""
    with attachment.sent.open("rb") as f:
        encoded = base64.b64encode(f.read()).decode("ascii")
    return f"data:{attachment.sent_mime};base64,{encoded}"


def _display_name(name: str | None) -> str:
    name = (name or "image").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = "".join(ch for ch in name if ch.isprintable())
    return (name or "image")[:120]


def _too_large(size: int) -> str:
    return (
        f"the file is {size / 1_000_000:.1f} MB; images are limited to "
        f"{MAX_IMAGE_BYTES // 1_000_000} MB."
    )
