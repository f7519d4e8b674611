"""Images decoded and the model's copy made: upright, RGB, no metadata, downscaled. Runs in a
sandbox child (sandbox.py): a decompression bomb or a pathological file meets its memory and
time limits there, not the web process's.

Only the formats Mistral accepts are decoded (JPEG, PNG, WEBP, GIF's first frame) plus
HEIC/HEIF, which phones take, through pillow-heif; Pillow is never asked to try any other of
its decoders on user bytes.
"""

import io
import warnings

import pillow_heif
from PIL import (
    GifImagePlugin,  # noqa: F401  (the accepted decoders, registered explicitly;
    Image,
    JpegImagePlugin,  # noqa: F401   Image.open below tries no other)
    PngImagePlugin,  # noqa: F401
    UnidentifiedImageError,
    WebPImagePlugin,  # noqa: F401
)

from conversations.parsers.errors import ImageRejected

pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

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


# What prepare() returns: plain values, as a child's reply must be.
Prepared = tuple[str, int, int, bytes, str, int, int]


def prepare(name: str, data: bytes, max_side: int) -> Prepared:
    """Decode `data` with the accepted decoders only, and encode the model's copy: upright,
    RGB, no metadata, its longer side at most `max_side`. Returns the upload's type, its
    upright width and height, and the copy's bytes, type, width and height. A decompression
    bomb, a truncated or corrupt file and any other format raise ImageRejected."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as im:
                return _prepare(im, name=name, max_side=max_side)
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
    except (OSError, SyntaxError, ValueError, EOFError):
        # Pillow's ways of saying a file is truncated or corrupt.
        raise ImageRejected(
            "corrupt", f"{name}: the image is damaged or incomplete and cannot be read."
        ) from None


def _prepare(im: Image.Image, *, name: str, max_side: int) -> Prepared:
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
    return _ACCEPTED[source_format], width, height, sent, sent_mime, sent_width, sent_height


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
