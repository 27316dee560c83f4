"""Writers for odd image files used by the tests (16-bit PNGs that PIL cannot write, EXIF-rotated JPEGs)."""
import io
import struct
import zlib

import numpy as np
from PIL import Image


def png16_bytes(arr: np.ndarray) -> bytes:
    """A 16-bit PNG from uint16 [H, W, C] (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)."""
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def jpeg_with_orientation(arr: np.ndarray, orientation: int) -> bytes:
    """JPEG bytes of uint8 RGB ``arr`` with an EXIF Orientation tag."""
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def object_rgba(size=(96, 64), box=(20, 10, 60, 50)) -> np.ndarray:
    """uint8 RGBA [H, W, 4]: a red square object (box = x0, y0, x1, y1) on a transparent background."""
    w, h = size
    rgba = np.zeros((h, w, 4), np.uint8)
    x0, y0, x1, y1 = box
    rgba[y0:y1, x0:x1] = (200, 30, 30, 255)
    return rgba
