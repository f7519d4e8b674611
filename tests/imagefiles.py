"""Image files made on the spot for the tests: photos with EXIF orientation and GPS, a
decompression bomb, a truncated JPEG, a HEIC as a phone takes it. Nothing is checked in."""

import io

import pillow_heif
from PIL import ExifTags, Image

RED, BLUE = (220, 30, 30), (30, 30, 220)


def halves(size: tuple[int, int], left=RED, right=BLUE) -> Image.Image:
    """Left half one colour, right half another: shows which way an image was turned."""
    width, height = size
    im = Image.new("RGB", size, right)
    im.paste(left, (0, 0, width // 2, height))
    return im


def photo_exif(*, orientation: int | None = None, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestPhone"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        info = exif.get_ifd(ExifTags.IFD.GPSInfo)
        info[ExifTags.GPS.GPSLatitudeRef] = "N"
        info[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
        info[ExifTags.GPS.GPSLongitudeRef] = "E"
        info[ExifTags.GPS.GPSLongitude] = (2.0, 21.0, 3.0)
    return exif


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    if fmt == "HEIF":
        pillow_heif.from_pillow(im).save(out, quality=80, **params)
    else:
        im.save(out, fmt, **params)
    return out.getvalue()


def jpeg(size=(640, 480), *, orientation=None, gps=False, image=None, quality=90) -> bytes:
    im = image if image is not None else halves(size)
    return encode(im, "JPEG", quality=quality, exif=photo_exif(orientation=orientation, gps=gps))


def png(size=(320, 200), mode="RGB", color=(10, 120, 200)) -> bytes:
    return encode(Image.new(mode, size, color), "PNG")


def heic(size=(800, 600)) -> bytes:
    return encode(halves(size), "HEIF")


def animated_gif() -> bytes:
    """Two frames: red, then blue. Only the first may be sent."""
    frames = [Image.new("RGB", (60, 40), RED), Image.new("RGB", (60, 40), BLUE)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def bomb(side: int = 8000) -> bytes:
    """A few kilobytes of PNG that decode to side² pixels (64 MP by default)."""
    return encode(Image.new("1", (side, side), 0), "PNG", optimize=True)


def phone_photo(size=(4000, 3000), *, seed: int = 7) -> bytes:
    """A 12 MP JPEG with the detail and size of a real phone photo (about 4 MB): gradients
    plus sensor-like noise, EXIF with orientation and GPS."""
    import numpy as np

    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x / 16) % 256, (y / 12) % 256, ((x + y) / 20) % 256], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype("uint8")
    return jpeg(image=Image.fromarray(pixels), orientation=6, gps=True, quality=90)


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(1)</script><rect width="10" height="10"/></svg>'
)
