"""Checks that a file is a sane PNG, and turns any PNG into 8-bit grayscale PNG bytes."""
from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from simclr_mura.datasets import layout

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # PNG spec (ISO/IEC 15948) section 5.2
_GRAY_8BIT = (0, 8)  # IHDR colour type 0 (grayscale), bit depth 8


class BadImage(Exception):
  """The file is not a usable PNG; the message says why in a few words."""


def check_png(data: bytes, max_side: int = layout.MAX_IMAGE_SIDE) -> bool:
  """Validates PNG bytes by reading the header and decoding every pixel.

  Args:
    data: the file's bytes.
    max_side: largest accepted width or height.

  Returns:
    True when the bytes are already an 8-bit grayscale PNG (they can be stored unchanged), False when they need
    `to_gray_png`.

  Raises:
    BadImage: not a PNG, an absurd size, or truncated/corrupt pixel data.
  """
  if not data:
    raise BadImage("empty file")
  if not data.startswith(PNG_SIGNATURE):
    raise BadImage("not a PNG file")
  # IHDR is always the first chunk: length(4) 'IHDR'(4) width(4) height(4) depth(1) colour type(1) ...
  if len(data) < 33 or data[12:16] != b"IHDR":
    raise BadImage("truncated PNG header")
  width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
  if width < 1 or height < 1 or width > max_side or height > max_side:
    raise BadImage(f"absurd image size {width}x{height} (at most {max_side} px a side)")
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # decodes all pixel data: raises on truncated or corrupt streams
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, zlib.error... for broken files
    raise BadImage(f"truncated or corrupt PNG ({type(e).__name__}: {e})") from None
  return (color_type, depth) == _GRAY_8BIT


def to_gray_png(data: bytes) -> bytes:
  """Re-encodes any PNG (RGB, RGBA, palette, 16-bit, 1-bit) as an 8-bit one-channel PNG."""
  with Image.open(io.BytesIO(data)) as image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
      array = np.asarray(image, dtype=np.float32)
      scale = 255.0 / 65535.0 if array.max(initial=0) > 255 else 1.0
      gray = Image.fromarray(np.clip(array * scale + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif image.mode in ("LA", "RGBA", "PA") or (image.mode == "P" and "transparency" in image.info):
      gray = image.convert("RGBA").convert("L")  # alpha ignored: radiographs carry no transparency
    else:
      gray = image.convert("L")  # ITU-R 601-2 luma for RGB
  out = io.BytesIO()
  gray.save(out, format="PNG", compress_level=3)
  return out.getvalue()
