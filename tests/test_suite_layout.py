"""The suite collects the same way on every machine: pytest imports each
``conftest.py`` under the module name ``conftest``, so which one a test
module gets from ``from conftest import ...`` depends on the order the
file system lists folders in."""
import pathlib

from repo_paths import REPO_ROOT

TESTS = pathlib.Path(REPO_ROOT) / 'tests'


def test_one_conftest():
    conftests = sorted(
        str(path.relative_to(TESTS)) for path in TESTS.rglob('conftest.py'))
    assert conftests == ['conftest.py']


def test_no_test_module_imports_conftest():
    importers = [
        str(path.relative_to(TESTS)) for path in TESTS.rglob('*.py')
        if any(
            line.startswith(('from conftest import', 'import conftest'))
            for line in path.read_text().splitlines())
    ]
    assert importers == [], (
        f'{importers} import conftest; import shared names from '
        'tests/repo_paths.py or another plain helper module')
