"""What an image file is: readable or not, and the size it loads at.

OpenCV, which MMCV decodes with, fails on unreadable files with an unnamed
``cv2.error`` or returns ``None``; it also decodes many truncated JPEGs with a
grey bottom and only a console warning. :func:`unreadable_reason` gives one
line for the user instead.

Photos from phones and cameras are often stored sideways with an EXIF
orientation tag that says how to turn them upright. MMCV's decoders turn them
(``LoadImageFromFile(color_type='color')``, the default) unless told not to
(``color_type='color_ignore_orientation'``), so a file stored 210x189 can load
as 189x210. :func:`read_header` reads the size and the tag without decoding
the pixels (about 0.1 ms per file), and :meth:`ImageHeader.loaded_size` says
the size a loader gives.
"""
import io
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

#: EXIF tag 0x0112: how the stored pixels are shown upright.
EXIF_ORIENTATION_TAG = 0x0112
#: What each EXIF orientation value does to the stored picture.
ORIENTATIONS = {
    1: 'none',
    2: 'mirror left-right',
    3: 'turn 180 degrees',
    4: 'mirror top-bottom',
    5: 'mirror and turn 90 degrees counter-clockwise',
    6: 'turn 90 degrees clockwise',
    7: 'mirror and turn 90 degrees clockwise',
    8: 'turn 90 degrees counter-clockwise',
}
#: Orientations that swap width and height.
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
#: Formats whose tag OpenCV and Pillow both apply to a stored pixel grid, in
#: every OpenCV 4 / 5 release (OpenCV reads the tag of PNG and WebP only in
#: recent releases; TIFF decoders differ).
ORIENTED_FORMATS = ('JPEG', 'MPO')
#: ``LoadImageFromFile.color_type`` values that apply the tag (with the
#: ``cv2`` and ``pillow`` backends; ``turbojpeg`` and ``tifffile`` never do).
ORIENTING_COLOR_TYPES = ('color', 'grayscale')
ORIENTING_BACKENDS = ('cv2', 'pillow')


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


def loader_applies_orientation(color_type: str, backend: str) -> bool:
    """Whether MMCV's ``imfrombytes(flag=color_type, backend=backend)``
    turns images by their EXIF orientation tag."""
    return (color_type in ORIENTING_COLOR_TYPES
            and backend in ORIENTING_BACKENDS)


@dataclass(frozen=True)
class ImageHeader:
    """Size and EXIF orientation of an image file, from its header.

    Args:
        width (int): Width of the stored pixel grid, in pixels.
        height (int): Height of the stored pixel grid, in pixels.
        format (str): Pillow's name of the file format (``'JPEG'``, ...).
        orientation (int): EXIF orientation, 1 (none) to 8; 1 when the file
            has no valid tag.
    """
    width: int
    height: int
    format: str
    orientation: int = 1

    @property
    def turn(self) -> str:
        """What the orientation tag does, e.g. ``'turn 90 degrees
        clockwise'``."""
        return ORIENTATIONS[self.orientation]

    @property
    def transposes(self) -> bool:
        """Whether applying the tag swaps width and height."""
        return self.orientation in TRANSPOSING_ORIENTATIONS

    def loaded_size(self,
                    applies_orientation: bool) -> Optional[Tuple[int, int]]:
        """``(width, height)`` of the decoded image, ``None`` if it depends
        on the OpenCV release (a swapping tag in a format other than JPEG).

        Args:
            applies_orientation (bool): Whether the loader applies the tag
                (:func:`loader_applies_orientation`).
        """
        if not self.transposes:
            return self.width, self.height
        if self.format not in ORIENTED_FORMATS:
            return None
        if applies_orientation:
            return self.height, self.width
        return self.width, self.height


def read_header(path: str) -> ImageHeader:
    """Read size, format and EXIF orientation of ``path`` without decoding.

    Raises:
        OSError: The file cannot be opened (``FileNotFoundError`` if it does
            not exist) or is not an image Pillow knows
            (``PIL.UnidentifiedImageError``, a subclass).
    """
    with Image.open(path) as image:
        try:
            orientation = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
        except Exception:  # a corrupt EXIF block: decoders ignore it too
            orientation = 1
        if orientation not in ORIENTATIONS:
            orientation = 1
        return ImageHeader(image.width, image.height, image.format or '',
                           orientation)
