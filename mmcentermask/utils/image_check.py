"""Say why an image file cannot be read (empty, truncated, not an image).

OpenCV, which MMCV decodes with, fails on such files with an unnamed
``cv2.error`` or returns ``None``; it also decodes many truncated JPEGs with a
grey bottom and only a console warning. :func:`unreadable_reason` gives one
line for the user instead.
"""
import io
from typing import Optional

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError


def unreadable_reason(path: str) -> Optional[str]:
    """Why ``path`` is not an image the model can read, or ``None`` if it is.

    Decodes with OpenCV (what the pipelines use) and, for formats Pillow knows,
    loads the file with Pillow too, which notices truncated files.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as error:
        return f'cannot be read ({error.strerror})'
    if not data:
        return 'empty file (0 bytes)'
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    try:
        pil = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        pil = None  # not a format Pillow knows; OpenCV decides alone
    if pil is not None:
        try:
            pil.load()
        except (OSError, SyntaxError, ValueError) as error:
            return (f'truncated or corrupt {pil.format} image '
                    f'({len(data)} bytes: {error})')
        finally:
            pil.close()
    if img is None or img.size == 0:
        return f'not an image OpenCV can decode ({len(data)} bytes)'
    return None
