"""Shared fixtures: a tiny deterministic COCO-format shapes dataset."""
import os.path as osp

import pytest

from mmcentermask.datasets import make_split

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    """Root of a 6-train / 3-val image shapes set of 64-96 px images."""
    root = tmp_path_factory.mktemp('tiny_coco')
    make_split(str(root), 'train', 6, seed=1, size_range=(64, 96),
               max_shapes=3, empty_every=4)
    make_split(str(root), 'val', 3, seed=2, size_range=(64, 96),
               max_shapes=3, empty_every=3)
    return root
