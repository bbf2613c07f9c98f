"""Image preprocessing: colour mode, centre crop and resize to the training size (paper §5.1).

Every image goes through ``preprocess``:

1. colour mode: every mode PIL opens becomes 8-bit RGB (or L when ``channels == 1``), 0 black and
   255 white (``to_mode``). Transparent images (an alpha band, premultiplied or not, or a transparent
   colour or palette entry) are composited on a white background. 16-bit grayscale (``I;16*``, and ``I``,
   which PIL uses for 16-bit PNG, PGM and TIFF samples) is scaled by 255/65535, values outside
   [0, 65535] clipped; float grayscale (``F``) is read as [0, 1] (the convention of float TIFFs), scaled
   by 255 and clipped. CIELAB goes to sRGB through PIL's colour management (D50 Lab, as in ICC
   profiles); palette, CMYK, YCbCr (JPEG's full range) and HSV use PIL's conversions. RGB becomes L
   with ITU-R 601-2 luma, ``L = 0.299 R + 0.587 G + 0.114 B``;
2. optional centre crop to a ``crop x crop`` square. An image whose shorter side is smaller than
   ``crop`` is first resized up (bicubic) so that its shorter side equals ``crop``;
3. "cover" resize to the target ``(H, W)``: scale (bicubic, antialiased when shrinking) so the image
   covers the target, then centre crop. For a square target and a square image this is a plain
   resize; an image that already has the target size is left untouched.

Centre offsets are ``(side - crop) // 2``, so a 218x178 CelebA image cropped at 160 keeps rows 29..188
and columns 9..168.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BICUBIC
WIDE_GRAY = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1}


def _gray8(img: Image.Image) -> Image.Image:
    """16-bit integer or float grayscale as 8-bit L (LA when a gray value is marked transparent)."""
    samples = np.asarray(img)
    gray = np.clip(np.rint(samples.astype(np.float64) * (255 / WIDE_GRAY[img.mode])), 0, 255).astype(np.uint8)
    transparent = img.info.get("transparency")
    if isinstance(transparent, int):  # the tRNS gray value of a 16-bit PNG
        alpha = np.where(samples == transparent, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray, alpha], axis=-1))  # uint8 (H, W, 2): LA
    return Image.fromarray(gray)


def _lab_to_rgb(img: Image.Image) -> Image.Image:
    from PIL import ImageCms

    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.applyTransform(img, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Converts ``img`` to 8-bit RGB (``channels=3``) or L (``channels=1``), flattening transparency on white."""
    mode = "RGB" if channels == 3 else "L"
    if img.mode == mode and not img.has_transparency_data:
        return img
    if img.mode in WIDE_GRAY:
        img = _gray8(img)
    elif img.mode == "LAB":
        img = _lab_to_rgb(img)
    elif img.mode == "La":  # PIL converts premultiplied gray to RGBA only through LA
        img = img.convert("LA")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert(mode)


def _center_box(width: int, height: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    left, top = (width - out_w) // 2, (height - out_h) // 2
    return left, top, left + out_w, top + out_h


def _cover(img: Image.Image, out_w: int, out_h: int) -> Image.Image:
    """Scales ``img`` so that it covers ``out_w x out_h``, then centre crops to exactly that size."""
    width, height = img.size
    if (width, height) == (out_w, out_h):
        return img
    scale = max(out_w / width, out_h / height)
    new_w = max(out_w, round(width * scale))
    new_h = max(out_h, round(height * scale))
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), RESAMPLE)
    return img.crop(_center_box(new_w, new_h, out_w, out_h))


def _center_crop(img: Image.Image, crop: int) -> Image.Image:
    """Centre crops a ``crop x crop`` square without downsampling; smaller images are resized up first."""
    width, height = img.size
    if min(width, height) < crop:
        return _cover(img, crop, crop)
    return img.crop(_center_box(width, height, crop, crop))


def preprocess(img: Image.Image, size: tuple[int, int], crop: int, channels: int) -> np.ndarray:
    """Returns ``img`` as uint8 ``(H, W, channels)``: colour mode, centre crop (``crop > 0``), cover resize."""
    img = to_mode(img, channels)
    if crop > 0:
        img = _center_crop(img, crop)
    out_h, out_w = size
    arr = np.asarray(_cover(img, out_w, out_h), dtype=np.uint8)
    return arr.reshape(out_h, out_w, channels)
