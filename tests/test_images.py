"""conversations/images.py: what is accepted, what the model's copy looks like, and a clear
refusal naming the file for every bad input."""

import base64
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import ExifTags, Image

from conversations.images import (
    ImageRejected,
    check_image_upload,
    estimated_tokens,
    image_data_url,
    prepare_image,
)
from tests import imagefiles

pytestmark = pytest.mark.django_db


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def sent_image(prepared) -> Image.Image:
    im = Image.open(io.BytesIO(prepared.sent))
    im.load()
    return im


def rejected(name: str, data: bytes) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        check_image_upload(upload(name, data))
    return caught.value


# Accepted, and what the model gets


def test_large_photo_is_downscaled_to_1540_and_counted_in_tokens():
    prepared = check_image_upload(upload("big.jpg", imagefiles.jpeg((4000, 3000))))
    assert (prepared.width, prepared.height) == (4000, 3000)
    assert (prepared.sent_width, prepared.sent_height) == (1540, 1155)
    assert sent_image(prepared).size == (1540, 1155)
    assert prepared.tokens == 55 * 42 + 42
    assert (prepared.mime, prepared.sent_mime) == ("image/jpeg", "image/jpeg")


def test_small_image_keeps_its_size(settings):
    prepared = check_image_upload(upload("small.jpg", imagefiles.jpeg((300, 200))))
    assert (prepared.sent_width, prepared.sent_height) == (300, 200)
    assert prepared.tokens == estimated_tokens(300, 200) == 11 * 8 + 8


def test_max_side_setting_applies(settings):
    settings.CHAT_IMAGE_MAX_SIDE = 1024
    prepared = check_image_upload(upload("big.jpg", imagefiles.jpeg((2048, 1024))))
    assert (prepared.sent_width, prepared.sent_height) == (1024, 512)


def test_exif_orientation_is_applied_and_metadata_with_gps_is_stripped():
    original = imagefiles.jpeg((400, 200), orientation=6, gps=True)
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    prepared = check_image_upload(upload("turned.jpg", original))
    im = sent_image(prepared)
    # Orientation 6: shown turned a quarter clockwise, so the stored left half is on top.
    assert im.size == (200, 400) == (prepared.sent_width, prepared.sent_height)
    assert (prepared.width, prepared.height) == (200, 400)
    top, bottom = im.getpixel((100, 50)), im.getpixel((100, 350))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]
    assert not im.getexif()
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(im.info)
    assert prepared.original == original  # the user keeps what they uploaded


def test_png_renamed_jpg_is_judged_by_its_content():
    prepared = check_image_upload(upload("screenshot.jpg", imagefiles.png()))
    assert (prepared.mime, prepared.sent_mime) == ("image/png", "image/png")
    assert sent_image(prepared).format == "PNG"


def test_transparent_png_is_laid_on_white_rgb():
    prepared = check_image_upload(
        upload("logo.png", imagefiles.png(mode="RGBA", color=(0, 0, 0, 0)))
    )
    im = sent_image(prepared)
    assert im.mode == "RGB"
    assert im.getpixel((5, 5)) == (255, 255, 255)


def test_animated_gif_sends_its_first_frame():
    prepared = check_image_upload(upload("anim.gif", imagefiles.animated_gif()))
    im = sent_image(prepared)
    assert (prepared.mime, im.format, getattr(im, "n_frames", 1)) == ("image/gif", "PNG", 1)
    r, g, b = im.getpixel((10, 10))
    assert r > 150 > b


def test_webp_is_accepted():
    data = imagefiles.encode(imagefiles.halves((500, 300)), "WEBP", quality=80)
    prepared = check_image_upload(upload("pic.webp", data))
    assert (prepared.mime, prepared.sent_mime, prepared.sent_width) == (
        "image/webp",
        "image/jpeg",
        500,
    )


def test_heic_phone_photo_is_accepted_and_sent_as_jpeg():
    prepared = check_image_upload(upload("IMG_0001.HEIC", imagefiles.heic((800, 600))))
    assert (prepared.mime, prepared.sent_mime) == ("image/heic", "image/jpeg")
    assert sent_image(prepared).size == (800, 600)


def test_cmyk_jpeg_becomes_rgb():
    data = imagefiles.encode(Image.new("CMYK", (50, 50), (0, 255, 255, 0)), "JPEG")
    assert sent_image(check_image_upload(upload("print.jpg", data))).mode == "RGB"


def test_data_url_is_the_stored_model_copy(tmp_path, settings, user):
    from conversations.uploads import attachment_create

    settings.MEDIA_ROOT = tmp_path
    prepared = prepare_image(name="a.png", data=imagefiles.png(), max_side=1540)
    attachment = attachment_create(owner=user, image=prepared)
    url = image_data_url(attachment)
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    assert base64.b64decode(url[len(prefix) :]) == prepared.sent


# Refused, each with the file's name and the reason


def test_svg_is_refused():
    err = rejected("drawing.svg", imagefiles.SVG)
    assert err.code == "unsupported"
    assert err.message.startswith("drawing.svg: not an image we accept")


def test_text_renamed_jpg_is_refused():
    err = rejected("notes.jpg", b"just some text, not a photo\n" * 20)
    assert (err.code, err.message.split(":")[0]) == ("unsupported", "notes.jpg")


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO"])
def test_formats_pillow_knows_but_we_do_not_accept_are_refused(fmt):
    data = imagefiles.encode(Image.new("RGB", (32, 32), (1, 2, 3)), fmt)
    assert rejected(f"pic.{fmt.lower()}", data).code == "unsupported"


def test_truncated_jpeg_is_refused():
    data = imagefiles.jpeg((800, 600))
    err = rejected("half.jpg", data[: len(data) // 2])
    assert err.code == "corrupt"
    assert err.message == "half.jpg: the image is damaged or incomplete and cannot be read."


def test_corrupt_png_is_refused():
    data = bytearray(imagefiles.png((200, 200)))
    data[60:120] = b"\x00" * 60
    assert rejected("broken.png", bytes(data)).code == "corrupt"


@pytest.mark.parametrize("side", [8000, 12000])  # past the warning, and past the hard limit
def test_decompression_bomb_is_refused(side):
    data = imagefiles.bomb(side)
    assert len(data) < 1_000_000  # small on the wire, side² pixels once decoded
    err = rejected("bomb.png", data)
    assert err.code == "too_many_pixels"
    assert err.message == "bomb.png: the image has too many pixels; the limit is 50 megapixels."


def test_file_over_10_mb_is_refused_before_decoding():
    err = rejected("huge.jpg", b"\xff\xd8" + b"\0" * 10_000_000)
    assert err.code == "too_large"
    assert err.message == "huge.jpg: the file is 10.0 MB; images are limited to 10 MB."


def test_empty_file_is_refused():
    assert rejected("empty.png", b"").code == "empty"


def test_file_name_is_cleaned_for_messages():
    err = rejected("../../etc/\x00passwd.svg", imagefiles.SVG)
    assert err.message.startswith("passwd.svg: ")
