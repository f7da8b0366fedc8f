"""One image file as 8-bit pixels: the depth rules shared by data sets and ``mlplab predict``.

Every image becomes 8-bit grayscale (Pillow mode ``L``) or 8-bit colour (``RGB``) by its
real depth:

* ``L`` and ``1`` (bilevel) are grayscale; ``LA`` loses its alpha;
* ``RGB`` is colour; ``RGBA``, ``RGBX``, ``CMYK``, ``YCbCr``, ... become ``RGB`` (alpha
  dropped, the stored colours kept, as torchvision's ``pil_loader`` does);
* palette images (``P``, ``PA``) are grayscale when every colour they use is grey
  (R = G = B), else colour;
* 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, and ``I`` with every value in
  0..65535) is scaled to 8 bits as ``round(v * 255 / 65535)``;
* floating-point images (``F``) are refused: their range (0..1? 0..255? metres?) is
  not in the file, so no scaling is sound; other modes are refused too.

A ``size = (height, width)`` resizes the converted image to exactly that size (Pillow's
``resize`` with ``LANCZOS``; an image of that size already is left untouched). EXIF
orientation is not applied. Pillow's warnings are silenced while reading, and a
decompression-bomb warning becomes the error. Every failure is one :class:`DataError`
naming the file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps

from mlplab.errors import DataError
from mlplab.fileio import file_kind
from mlplab.images import MAX_SIDE, ImageShape

__all__ = [
    "decode_image",
    "image_size",
    "load_pil",
    "open_image",
    "pixels_of",
    "quiet_pillow",
    "resize_rows",
]

_GREY_MODES = {"1", "L", "LA", "La"}
_WIDE_GREY_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
_COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_READ_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


@contextlib.contextmanager
def quiet_pillow() -> Iterator[None]:
    """Pillow's warnings silenced; a decompression-bomb warning raised as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _grey_palette(im: Image.Image) -> bool:
    """Whether every palette entry the image uses is grey (R = G = B)."""
    used = np.unique(np.asarray(im.getchannel(0) if im.mode == "PA" else im))
    pal = np.asarray(im.getpalette("RGB") or [0, 0, 0], dtype=np.int64).reshape(-1, 3)
    rgb = pal[np.minimum(used, len(pal) - 1)]
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())


def _eight_bit(im: Image.Image, path: object) -> Image.Image:
    """``im`` (loaded) as an ``L`` or ``RGB`` image, by the depth rules of the module."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode in _GREY_MODES:
        return im.convert("L")
    if mode in ("P", "PA"):
        return im.convert("L" if _grey_palette(im) else "RGB")
    if mode in _WIDE_GREY_MODES:
        v = np.asarray(im)
        if v.size and (int(v.min()) < 0 or int(v.max()) > 65535):
            raise DataError(
                f"{path}: 32-bit integer image with values in {int(v.min())}..{int(v.max())}; "
                "mlplab reads 8- and 16-bit images (values 0..65535) only"
            )
        v = v.astype(np.uint32)  # round(v * 255 / 65535) = floor((2 v + 257) / 514), no ties
        return Image.fromarray(((2 * v + 257) // 514).astype(np.uint8))
    if mode == "F":
        raise DataError(
            f"{path}: floating-point image (mode 'F'); its value range is not stored in the "
            "file, so mlplab cannot turn it into pixels: save it as an 8- or 16-bit image"
        )
    if mode in _COLOUR_MODES:
        return im.convert("RGB")
    raise DataError(f"{path}: image mode {mode!r} is not supported (use 8-bit grey or RGB)")


def open_image(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    *,
    any_size: bool = False,
) -> Image.Image:
    """The image at ``path`` in mode ``L`` or ``RGB`` (``channels`` 1 or 3 forces one),
    resized to ``size = (height, width)`` when given. Without ``size`` a side over
    ``MAX_SIDE`` is refused unless ``any_size`` (Pillow's decompression-bomb limit still
    holds). Call inside :func:`quiet_pillow`."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # a FIFO would block Image.open
            raise DataError(f"{path}: not an image file ({file_kind(mode)})")
        with Image.open(path) as im:
            w, h = im.size
            if size is None and not any_size and max(w, h) > MAX_SIDE:
                raise DataError(
                    f"{path}: image is {w}x{h} pixels (width x height), more than "
                    f"{MAX_SIDE} on a side; resize it (--set size=HEIGHT,WIDTH)"
                )
            im.load()
            out = _eight_bit(im, path)
            if channels is not None and (out.mode == "L") != (channels == 1):
                out = out.convert("L" if channels == 1 else "RGB")
            if size is not None and out.size != (size[1], size[0]):
                out = out.resize((size[1], size[0]), Image.Resampling.LANCZOS)
            return out  # loaded: leaving the ``with`` closes the file, not the pixels
    except DataError:
        raise
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: not a readable image file ({exc})") from None


def load_pil(
    path: str | os.PathLike, channels: int | None = None, *, photo: bool = False
) -> Image.Image:
    """The image at ``path`` as a Pillow image of mode ``L`` or ``RGB`` (module rules).

    ``channels``: 1 gives ``L`` (colour converted by Pillow's ITU-R 601-2 luma), 3 gives
    ``RGB`` (grey expanded, R = G = B), ``None`` keeps the image's own depth. ``photo``
    (``mlplab predict``): any size (a camera's 48-megapixel photo too; the caller shrinks
    it) and the EXIF orientation applied; data sets take neither. Raises one
    :class:`DataError` naming the file; Pillow's warnings are not printed.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    with quiet_pillow():
        im = open_image(path, None, channels, any_size=photo)
        return ImageOps.exif_transpose(im) if photo else im


def decode_image(
    path: str | os.PathLike, *, size: tuple[int, int] | None = None, channels: int | None = None
) -> np.ndarray:
    """One image as an ``(height, width, channels)`` uint8 array (HWC), by the module's
    rules, resized to ``size = (height, width)`` when given."""
    with quiet_pillow():
        im = open_image(path, size, channels)
    return pixels_of(im, path)


def pixels_of(im: Image.Image, path: object) -> np.ndarray:
    """The ``(height, width, 1 or 3)`` uint8 array of an ``L`` or ``RGB`` image."""
    c = 1 if im.mode == "L" else 3
    w, h = im.size
    buf = im.tobytes()
    if len(buf) != h * w * c:  # defensive: a decoder returned a short buffer
        raise DataError(f"{path}: decoded to {len(buf)} bytes, expected {h * w * c}")
    return np.frombuffer(buf, dtype=np.uint8).reshape(h, w, c)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of the image at ``path``, from its header (nothing decoded)."""
    with quiet_pillow():
        try:
            with Image.open(path) as im:
                w, h = im.size
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: not a readable image file ({exc})") from None
    return h, w


def resize_rows(
    x: np.ndarray, shape: ImageShape, size: tuple[int, int]
) -> tuple[np.ndarray, ImageShape]:
    """uint8 rows of ``shape`` images resized one by one to ``size = (height, width)``, as
    a file of the same pixels is (``LANCZOS``), with their new shape; unchanged when the
    size is theirs already."""
    new = ImageShape(int(size[0]), int(size[1]), shape.channels)
    if (new.height, new.width) == (shape.height, shape.width):
        return x, shape
    out = np.empty((len(x), new.size), dtype=np.uint8)
    src, dst = shape.planes(x), new.planes(out)
    for i in range(len(x)):
        for c in range(shape.channels):  # one plane at a time: resampling is per channel
            im = Image.fromarray(np.ascontiguousarray(src[i, c]))
            dst[i, c] = np.asarray(im.resize((new.width, new.height), Image.Resampling.LANCZOS))
    return out, new
