"""Shared fixtures: a tiny deterministic COCO-format shapes dataset; the
``numerics`` marker of the tests that CI runs a second time with other CPU
kernels."""
import logging
import os.path as osp

import pytest
from mmengine.logging import MMLogger

from repo_paths import REPO_ROOT

from mmcentermask.datasets import make_panoptic_split, make_split

#: Tests whose results rest on float32 arithmetic compared across code
#: paths, runtimes or precisions (golden fidelity, ONNX parity, mixed
#: precision, the CPU-kernel check): ``-m numerics`` selects them.
NUMERICS_TESTS = (
    'tests/test_fidelity/',
    'tests/test_deploy/',
    'tests/test_models/test_detectors/test_centermask.py',
    'tests/test_models/test_utils/test_float32.py',
    'tests/test_tools/test_check_mixed_precision.py',
    'tests/test_cpu_kernels.py',
)


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        path = osp.relpath(str(item.path), REPO_ROOT).replace(osp.sep, '/')
        if path.startswith(NUMERICS_TESTS):
            item.add_marker(pytest.mark.numerics)


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    """Root of a 6-train / 3-val image shapes set of 64-96 px images."""
    root = tmp_path_factory.mktemp('tiny_coco')
    make_split(str(root), 'train', 6, seed=1, size_range=(64, 96),
               max_shapes=3, empty_every=4)
    make_split(str(root), 'val', 3, seed=2, size_range=(64, 96),
               max_shapes=3, empty_every=3)
    return root


@pytest.fixture(scope='module')
def panoptic_val_root(tmp_path_factory):
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


@pytest.fixture
def warnings_log():
    """The messages of the warnings MMEngine's current logger emits while
    the test runs (a list filled as they come)."""
    records = []

    class Keep(logging.Handler):

        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Keep(level=logging.WARNING)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
