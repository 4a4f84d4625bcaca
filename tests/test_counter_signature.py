"""The customer's signature upload at the counter: whatever arrives in the signature field,
the answer is a 4xx with a message beside the field, or a clean PNG of bounded size."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib

from PIL import Image

from app.extensions import db
from app.models import Inspection
from app.counter import inspections
from tests.test_counter import _pickup_hire, post, staff_client  # noqa: F401 (fixture)


def data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def white_png(width: int, height: int) -> bytes:
    """A 1-bit all-white PNG, built row by row: a few hundred KB however many pixels it has."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte, then the row's bits
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels)
            + _chunk(b"IEND", b""))


def signed_png(size=(600, 200), **save) -> bytes:
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    for x in range(20, min(size[0], 580)):
        img.putpixel((x, 50 + (x % 7)), (0, 0, 0, 255))
    out = io.BytesIO()
    img.save(out, "PNG", **save)
    return out.getvalue()


def _sign(staff_client, raw: bytes):  # noqa: F811 (the fixture)
    hire = _pickup_hire(staff_client.branch)
    response = post(staff_client, f"/counter/hires/{hire.reference}/pickup/signature",
                    {"signature": data_url(raw)})
    return hire, response


def _refused_beside_field(response, words: str) -> None:
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="signature-error">{words}' in page, page[-3000:]


def test_a_decompression_bomb_is_refused_with_a_message(staff_client):  # noqa: F811
    bomb = white_png(15_000, 15_000)  # 225 megapixels
    assert len(bomb) < 300_000
    hire, response = _sign(staff_client, bomb)
    _refused_beside_field(response, "The signature is too large")
    signed = db.session.scalar(db.select(Inspection.signed_at).where(Inspection.hire_id == hire.id))
    assert signed is None


def test_many_pixels_below_the_bomb_limit_are_refused_before_decoding(staff_client, app):  # noqa: F811
    # 16 megapixels with a stroke on it: Pillow itself would decode it (tens of MB).
    img = Image.new("L", (8000, 2000), 255)
    img.paste(0, (100, 900, 7900, 910))
    out = io.BytesIO()
    img.save(out, "PNG")
    assert len(out.getvalue()) < app.config["SIGNATURE_MAX_BYTES"]
    _, response = _sign(staff_client, out.getvalue())
    _refused_beside_field(response, "The signature is too large")


def test_too_many_bytes_are_refused_with_a_message(staff_client, app):  # noqa: F811
    noise = Image.frombytes("RGBA", (400, 400), random.Random(15).randbytes(400 * 400 * 4))
    out = io.BytesIO()
    noise.save(out, "PNG")
    assert len(out.getvalue()) > app.config["SIGNATURE_MAX_BYTES"]
    _, response = _sign(staff_client, out.getvalue())
    _refused_beside_field(response, "The signature is too large")


def test_not_an_image_is_refused_with_a_message(staff_client):  # noqa: F811
    _, response = _sign(staff_client, b"GIF89a this is not a picture at all")
    _refused_beside_field(response, "The signature did not arrive as a picture")
    jpeg = io.BytesIO()
    Image.new("RGB", (600, 200), (0, 0, 0)).save(jpeg, "JPEG")
    _, response = _sign(staff_client, jpeg.getvalue())
    _refused_beside_field(response, "The signature did not arrive as a picture")


def test_a_good_signature_is_stored_re_encoded_without_its_metadata(staff_client, app):  # noqa: F811
    from PIL.PngImagePlugin import PngInfo
    extra = PngInfo()
    extra.add_text("Comment", "tracking id 12345")
    extra.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret</x:xmpmeta>")
    sent = signed_png(size=(2400, 200), pnginfo=extra, dpi=(300, 300))
    hire, response = _sign(staff_client, sent)
    assert response.status_code == 303
    insp = db.session.scalar(db.select(Inspection).where(Inspection.hire_id == hire.id))
    assert insp.signed_at is not None
    stored = (inspections.upload_dir() / insp.signature_filename).read_bytes()
    assert stored != sent
    image = Image.open(io.BytesIO(stored))
    assert image.format == "PNG"
    assert max(image.size) <= app.config["SIGNATURE_MAX_SIDE"]
    assert image.size[0] * image.size[1] <= app.config["SIGNATURE_MAX_PIXELS"]
    assert image.info == {} or set(image.info) <= {"transparency"}, image.info
    assert b"tEXt" not in stored and b"iTXt" not in stored and b"pHYs" not in stored
    image.load()
    assert image.getextrema()[3][1] > 0  # the stroke is still there (scaled down)
