"""Images a user attaches: checked by their content with Pillow, made ready for the model,
and turned into a data URL only while a request is built.

What the model gets is not what the user uploaded. Current vision models work on at most
1540×1540 pixels (Pixtral on 1024×1024) and the API only downscales anything larger, so the
copy sent is downscaled to CHAT_IMAGE_MAX_SIDE, turned upright by its EXIF orientation,
converted to RGB and stripped of every metadata block (EXIF with GPS, XMP, ICC). The original
is kept unchanged for its owner.

Only the formats Mistral accepts are decoded (JPEG, PNG, WEBP, GIF's first frame) plus
HEIC/HEIF, which phones take, through pillow-heif; Pillow is never asked to try any other of
its decoders on user bytes.
"""

import base64
import io
import warnings
from dataclasses import dataclass

import pillow_heif
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import (
    GifImagePlugin,  # noqa: F401  (the accepted decoders, registered explicitly;
    Image,
    JpegImagePlugin,  # noqa: F401   Image.open below tries no other)
    PngImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from conversations.models import Attachment

pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# Mistral's documented limits (docs: studio/conversations/vision); the known-limitations page
# says 20 MB, and we build to the stricter figure.
MAX_IMAGES_PER_REQUEST = 8
MAX_IMAGE_BYTES = 10_000_000
# Pillow warns above MAX_IMAGE_PIXELS and refuses at twice that; its default (89 MP) lets a
# small file expand to gigabytes. 50 MP still takes a 48 MP phone photo; the API refuses
# anything over 10000×10000 anyway.
MAX_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Pillow format name -> what we accept it as.
_ACCEPTED = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "HEIF": "image/heic",
}
_FORMATS = tuple(_ACCEPTED)
# Lossless sources (screenshots, diagrams) stay lossless; photos become JPEG.
_LOSSLESS = {"PNG", "GIF"}
_JPEG_QUALITY = 85

# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
}


class ImageRejected(Exception):
    """An upload we will not store; `message` names the file and the reason, for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    """Decode `data` with the accepted decoders only, and encode the model's copy: upright,
    RGB, no metadata, its longer side at most `max_side`. A decompression bomb, a truncated
    or corrupt file and any other format raise ImageRejected."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as im:
                return _prepare(im, name=name, data=data, max_side=max_side)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected(
            "unsupported",
            f"{name}: not an image we accept. Send JPEG, PNG, WEBP, GIF or HEIC images.",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(
            "too_many_pixels",
            f"{name}: the image has too many pixels; the limit is {MAX_PIXELS // 1_000_000} "
            "megapixels.",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError):
        # Pillow's ways of saying a file is truncated or corrupt.
        raise ImageRejected(
            "corrupt", f"{name}: the image is damaged or incomplete and cannot be read."
        ) from None


def _prepare(im: Image.Image, *, name: str, data: bytes, max_side: int) -> PreparedImage:
    source_format = im.format
    if source_format not in _ACCEPTED:  # cannot happen with formats=...; belt and braces
        raise ImageRejected("unsupported", f"{name}: not an image we accept.")
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageRejected(
            "too_many_pixels",
            f"{name}: the image has too many pixels; the limit is {MAX_PIXELS // 1_000_000} "
            "megapixels.",
        )
    orientation = im.getexif().get(0x0112) if source_format != "HEIF" else None
    transpose = _ORIENTATION.get(orientation) if isinstance(orientation, int) else None

    # draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale straight away: a 12 MP photo is
    # decoded at 3 MP for a 1540 px target, most of the time saved. (thumbnail() asks draft
    # for a square box, which a 4:3 photo defeats, hence the explicit size.)
    size = _fit(im.size, max_side)
    if source_format == "JPEG" and size != im.size:
        im.draft(None, size)
    im = _to_rgb(im)
    if size != im.size:
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if transpose is not None:
        im = im.transpose(transpose)
        if transpose in _SWAPS_SIDES:
            width, height = height, width

    out = io.BytesIO()
    im.info.clear()  # nothing of the source's metadata may ride along
    if source_format in _LOSSLESS:
        im.save(out, "PNG", optimize=False, compress_level=6)
        sent_mime = "image/png"
    else:
        im.save(out, "JPEG", quality=_JPEG_QUALITY, optimize=False)
        sent_mime = "image/jpeg"
    sent = out.getvalue()
    sent_width, sent_height = im.size
    return PreparedImage(
        name=name,
        original=data,
        mime=_ACCEPTED[source_format],
        width=width,
        height=height,
        sent=sent,
        sent_mime=sent_mime,
        sent_width=sent_width,
        sent_height=sent_height,
        tokens=estimated_tokens(sent_width, sent_height),
    )


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled down, aspect kept, so its longer side is at most `max_side`."""
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with any transparency laid on white: a model shown transparent pixels sees
    them as black, which hides dark text on a transparent screenshot."""
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


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
