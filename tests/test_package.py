"""The package imports, gates the stack and registers into mmdet's registries."""
import importlib
import subprocess
import sys
from importlib import metadata

import pytest

import mmcentermask
from mmcentermask.utils import check_version
from mmcentermask.utils.version_gate import REQUIREMENTS


def test_version_string():
    assert mmcentermask.__version__ == metadata.version('mmcentermask')


@pytest.mark.parametrize('package,low,high', REQUIREMENTS)
def test_installed_stack_passes_gate(package, low, high):
    check_version(package, low, high)


def test_gate_names_version_range_and_fix():
    installed = metadata.version('mmcv')
    with pytest.raises(ImportError) as err:
        check_version('mmcv', '0.0.1', installed)
    msg = str(err.value)
    assert f'mmcv {installed} is installed' in msg
    assert f'mmcv>=0.0.1,<{installed}' in msg
    assert 'tools/setup_env.sh' in msg
    assert '\n' not in msg


def test_gate_missing_package():
    with pytest.raises(ImportError, match='no-such-dist is not installed'):
        check_version('no-such-dist', '1.0', '2.0')


def test_wrong_mmcv_version_fails_import_with_one_line(tmp_path):
    """A fake mmcv 2.2.0 distribution makes ``import mmcentermask`` fail."""
    dist = tmp_path / 'mmcv-2.2.0.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: mmcv\nVersion: 2.2.0\n')
    code = ('import sys; sys.path.insert(0, %r); import mmcentermask'
            % str(tmp_path))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('ImportError: mmcentermask requires '
                           'mmcv>=2.0.0rc4,<2.2.0, but mmcv 2.2.0 is '
                           'installed'), last


def test_import_is_idempotent():
    importlib.reload(mmcentermask)
