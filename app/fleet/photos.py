"""Car photos: check an upload, strip what it carries, store it under its content hash.

An upload is checked by size first, then opened with Pillow, which must recognise it as a
JPEG, PNG or WebP whatever its name or declared type says; pixel counts beyond
CAR_PHOTO_MAX_PIXELS are refused before decoding (decompression bombs). The picture is then
turned upright (EXIF orientation), scaled down to CAR_PHOTO_MAX_SIDE, and re-encoded from
its pixels alone, so EXIF (GPS position, camera serial numbers), XMP, ICC and comments are
left behind. The file is named by the SHA-256 of what is stored, so the same photo is stored
once and its address never needs to change (it is served with a year-long cache).

The public `media` blueprint serves them: car photos are shown to customers in search, with
narrower copies (CAR_PHOTO_WIDTHS) for `srcset`, each made from the stored photo on its first
request and kept next to it (`w<width>/<name>`), so a phone never downloads the full size.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory
from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import select

from ..extensions import db
from ..models import CarPhoto
from ..security import allow

# Pillow's format name -> (stored MIME type, file extension, how to save it).
FORMATS = {
    "JPEG": ("image/jpeg", "jpg", {"format": "JPEG", "quality": 85, "optimize": True}),
    "PNG": ("image/png", "png", {"format": "PNG", "optimize": True}),
    "WEBP": ("image/webp", "webp", {"format": "WEBP", "quality": 85}),
}
FILENAME_RE = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp)$")
PHOTO_SUBDIR = "cars"


class PhotoError(Exception):
    """The upload is not a photo we can keep; the message says why."""


class PhotoTooLarge(PhotoError):
    """The upload has more bytes or pixels than its limit allows."""


@dataclass(frozen=True)
class StoredPhoto:
    filename: str
    content_type: str
    width: int
    height: int
    size_bytes: int


def photo_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"]) / PHOTO_SUBDIR


def process(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int) -> tuple[bytes, str, int, int]:
    """Check and clean one upload: (clean bytes, Pillow format, width, height) or PhotoError."""
    if not data:
        raise PhotoError("The file is empty.")
    if len(data) > max_bytes:
        raise PhotoTooLarge(f"The photo is too large ({len(data) / 1_048_576:.1f} MB); "
                         f"the limit is {max_bytes // 1_048_576} MB.")
    try:
        with warnings.catch_warnings():
            # Pillow warns (then errors) on huge images; we check the size ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            fmt = probe.format
            width, height = probe.size
            if fmt not in FORMATS:
                raise PhotoError("Upload a JPEG, PNG or WebP photo.")
            if width * height > max_pixels:
                raise PhotoTooLarge(f"The photo is too large ({width}×{height} pixels).")
            probe.verify()  # structure check; the image must be reopened afterwards
            image = Image.open(io.BytesIO(data))
            image.load()
    except PhotoError:
        raise
    except Image.DecompressionBombError:  # beyond Pillow's own limit: refused while opening
        raise PhotoTooLarge("The photo is too large (too many pixels).")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise PhotoError("That file is not a photo we can read: upload a JPEG, PNG or WebP.")
    image = ImageOps.exif_transpose(image)  # upright, and the orientation tag is gone
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif fmt in ("PNG", "WEBP") and image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    # A new image from the pixels only: no info dict, so no EXIF/XMP/ICC/comments survive.
    clean = Image.new(image.mode, image.size)
    if image.mode == "P":
        clean.putpalette(image.getpalette())
    clean.paste(image)
    out = io.BytesIO()
    clean.save(out, **FORMATS[fmt][2])
    return out.getvalue(), fmt, clean.width, clean.height


def store(data: bytes) -> StoredPhoto:
    """Process an upload and write it (once) under its content hash."""
    cfg = current_app.config
    clean, fmt, width, height = process(
        data, max_bytes=cfg["CAR_PHOTO_MAX_BYTES"], max_pixels=cfg["CAR_PHOTO_MAX_PIXELS"],
        max_side=cfg["CAR_PHOTO_MAX_SIDE"])
    content_type, ext, _ = FORMATS[fmt]
    filename = write_content_addressed(photo_dir(), clean, ext)
    return StoredPhoto(filename, content_type, width, height, len(clean))


def write_content_addressed(directory: Path, data: bytes, ext: str) -> str:
    """Write `data` (once) as <sha256>.<ext> in `directory`; return the file name."""
    filename = f"{hashlib.sha256(data).hexdigest()}.{ext}"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    if not target.exists():
        _write_atomically(target, data)
    return filename


def _write_atomically(target: Path, data: bytes) -> None:
    """Write then rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def narrower_copy(name: str, width: int) -> Path | None:
    """The stored photo `name` at most `width` pixels wide (made once, then kept); None when
    the photo is not on disk. Its name and format are the original's."""
    target = photo_dir() / f"w{width}" / name
    if target.exists():
        return target
    source = photo_dir() / name
    if not source.is_file():
        return None
    with Image.open(source) as image:
        image.load()
        fmt = image.format or "PNG"
        if image.width > width:
            image.thumbnail((width, image.height))
        out = io.BytesIO()
        image.save(out, **FORMATS.get(fmt, FORMATS["PNG"])[2])
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, out.getvalue())
    return target


def remove_if_unused(filename: str) -> None:
    """Delete a stored file once no car uses it (the same photo may serve two cars)."""
    still_used = db.session.scalar(select(CarPhoto.id).where(CarPhoto.filename == filename).limit(1))
    if still_used is None and FILENAME_RE.match(filename):
        (photo_dir() / filename).unlink(missing_ok=True)
        for width in current_app.config["CAR_PHOTO_WIDTHS"]:
            (photo_dir() / f"w{width}" / filename).unlink(missing_ok=True)


media_bp = Blueprint("media", __name__)


@media_bp.get("/cars/<name>")
@allow("public")
def car_photo(name: str):
    """A car photo, for anyone: customers see them when they search for a car."""
    if not FILENAME_RE.match(name):
        abort(404)
    known = db.session.scalar(select(CarPhoto.content_type).where(CarPhoto.filename == name).limit(1))
    if known is None:
        abort(404)
    response = send_from_directory(photo_dir(), name, mimetype=known,
                                   max_age=current_app.config["CAR_PHOTO_CACHE_SECONDS"])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


@media_bp.get("/cars/w<int:width>/<name>")
@allow("public")
def car_photo_width(width: int, name: str):
    """A narrower copy of a car photo, for `srcset` (only the widths CAR_PHOTO_WIDTHS names)."""
    if width not in current_app.config["CAR_PHOTO_WIDTHS"] or not FILENAME_RE.match(name):
        abort(404)
    known = db.session.scalar(select(CarPhoto.content_type).where(CarPhoto.filename == name).limit(1))
    copy = narrower_copy(name, width) if known is not None else None
    if copy is None:
        abort(404)
    response = send_from_directory(copy.parent, name, mimetype=known,
                                   max_age=current_app.config["CAR_PHOTO_CACHE_SECONDS"])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response
