"""Any image a phone or a web page gives, as the small square uint8 picture a dataset keeps.

Phones write JPEGs whose pixels lie sideways with an EXIF tag saying how to turn them; web pages give PNGs
with transparency, palette GIFs, WebP, grayscale scans, CMYK prints. Each becomes RGB, upright, centre-cropped
to a square (a resize alone would squash a portrait photo) and resized once to the dataset's resolution.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

RESOLUTIONS = (32, 64, 96)  # what the user picks: CIFAR's size, and two a pretrained backbone sees better
MAX_PIXELS = 64_000_000  # per image, before it is decoded: a 48-megapixel phone photo passes, a pixel bomb not


class ImageRejected(ValueError):
    """This member is not an image this app can read; the message says why, in a few words."""


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Transparent pixels over white, as a browser shows them (black would be a made-up colour)."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return _flatten_alpha(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale: scale to 8 bits, not clip at 255
        array = np.asarray(img, dtype=np.float64)
        top = max(float(array.max()), 1.0)
        img = Image.fromarray((array * (255.0 / top)).astype(np.uint8))
    return img.convert("RGB")


def square_pixels(data: bytes, size: int) -> np.ndarray:
    """size x size x 3 uint8 pixels of an encoded image: upright, RGB, centre-cropped, resized.
    Raises ImageRejected for anything that is not a readable image of at most MAX_PIXELS pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise ImageRejected(
                    f"{img.width}x{img.height} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels allowed"
                )
            img.draft("RGB", (size * 4, size * 4))  # a JPEG decodes at a fraction of its size: much faster
            img = to_rgb(ImageOps.exif_transpose(img))  # turned first: the EXIF tag is the original's
            img = ImageOps.fit(img, (size, size), Image.Resampling.LANCZOS)
            return np.asarray(img, dtype=np.uint8).copy()
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("not an image this app can read (PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:  # truncated or corrupt data
        raise ImageRejected(f"corrupt or truncated image ({str(err).splitlines()[0][:80]})") from None


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless: the dataset keeps what was decoded, not a second JPEG's artefacts."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=False)
    return out.getvalue()
