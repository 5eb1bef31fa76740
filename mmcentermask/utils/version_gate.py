"""Import-time checks that the OpenMMLab stack is one mmcentermask supports.

mmdet 3.3 itself asserts ``mmcv<2.2.0`` deep inside its import; these gates run
first and turn a wrong stack into a single ``ImportError`` line that names the
installed version, the required range and the fix.
"""
from importlib import metadata
from typing import Tuple

from packaging.version import Version

#: (distribution, lowest allowed, first disallowed)
REQUIREMENTS: Tuple[Tuple[str, str, str], ...] = (
    ('mmcv', '2.0.0rc4', '2.2.0'),
    ('mmengine', '0.10.0', '1.0.0'),
    ('mmdet', '3.3.0', '3.4.0'),
)

FIX = ('run `bash tools/setup_env.sh` (it installs mmcv==2.1.0 with its ops, '
       'mmengine==0.10.7 and mmdet==3.3.0)')


def check_version(package: str, low: str, high: str) -> None:
    """Raise ImportError unless ``low <= version(package) < high``.

    Args:
        package (str): Distribution name, e.g. ``'mmcv'``.
        low (str): Lowest supported version (inclusive).
        high (str): First unsupported version (exclusive).
    """
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError:
        raise ImportError(
            f'mmcentermask requires {package}>={low},<{high}, but {package} '
            f'is not installed; fix: {FIX}.') from None
    if not Version(low) <= Version(installed) < Version(high):
        raise ImportError(
            f'mmcentermask requires {package}>={low},<{high}, but {package} '
            f'{installed} is installed; fix: {FIX}.')


def check_stack() -> None:
    """Check every entry of :data:`REQUIREMENTS`."""
    for package, low, high in REQUIREMENTS:
        check_version(package, low, high)
