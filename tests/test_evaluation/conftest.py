"""Shared fixture of the panoptic evaluation tests."""
import pytest

from mmcentermask.datasets import make_panoptic_split


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    """A 3-image panoptic shapes val split (48-64 px, every image with
    objects) written once per test module."""
    root = tmp_path_factory.mktemp('panoptic_val')
    make_panoptic_split(
        str(root),
        'val',
        3,
        seed=5,
        size_range=(48, 64),
        max_shapes=3,
        empty_every=0)
    return root
