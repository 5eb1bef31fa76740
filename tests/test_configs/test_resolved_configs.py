"""Every shipped config resolves to the same dict as its recorded form.

``tests/data/resolved_configs/<family>/<config>.json`` holds each config of
``configs/<family>/`` as ``Config.fromfile(...).to_dict()`` resolves it
(bases merged, ``custom_imports`` applied), written as canonical JSON (sorted
keys, tuples as lists). Moving settings between a config and its bases must
leave this dict unchanged: same model, same pipelines, same schedule.

A deliberate change of what a config builds updates the record with::

    python tests/test_configs/test_resolved_configs.py

and the diff of the JSON files shows what changed.
"""
import json
from pathlib import Path
from typing import Any, List

import pytest
from config_test_utils import CONFIG_ROOT, REPO_ROOT, load_config

RECORD_ROOT = Path(REPO_ROOT) / 'tests' / 'data' / 'resolved_configs'
MISSING = object()  # a key one side of a comparison does not have


def shipped_configs() -> List[Path]:
    """The user-facing configs, ``configs/<family>/*.py``. Bases under
    ``configs/_base_/`` are checked through the configs that inherit them."""
    return sorted(
        path for path in Path(CONFIG_ROOT).glob('*/*.py')
        if path.parent.name != '_base_')


def record_path(config: Path) -> Path:
    """``configs/<family>/<name>.py`` -> ``RECORD_ROOT/<family>/<name>.json``.
    """
    return RECORD_ROOT / config.relative_to(CONFIG_ROOT).with_suffix('.json')


def resolve(config: Path) -> str:
    """The canonical JSON text of the config's resolved dict.

    ``to_dict`` leaves out the config's own file name (``Config.filename``),
    the only entry that depends on where the checkout is.
    """
    resolved = load_config(str(config)).to_dict()
    return json.dumps(resolved, sort_keys=True, indent=1) + '\n'


def differing_paths(resolved: Any, expected: Any, path: str = '') -> List[str]:
    """Dotted paths (``model.backbone.arch``, ``train_pipeline[2]``) at which
    two JSON values differ, a missing key included."""
    if isinstance(resolved, dict) and isinstance(expected, dict):
        return [
            found for key in sorted(set(resolved) | set(expected))
            for found in differing_paths(
                resolved.get(key, MISSING), expected.get(key, MISSING),
                f'{path}.{key}' if path else key)
        ]
    if (isinstance(resolved, list) and isinstance(expected, list)
            and len(resolved) == len(expected)):
        pairs = enumerate(zip(resolved, expected))
        return [
            found for index, (item, expected_item) in pairs for found in
            differing_paths(item, expected_item, f'{path}[{index}]')
        ]
    return [] if resolved == expected else [path]


def test_differing_paths_names_each_change():
    recorded = {'model': {'arch': 'V-39', 'out': [1, 2]}, 'seed': 0}
    changed = {'model': {'arch': 'V-57', 'out': [1, 3]}, 'extra': None}
    assert differing_paths(recorded, recorded) == []
    assert differing_paths(
        changed, recorded) == ['extra', 'model.arch', 'model.out[1]', 'seed']
    assert differing_paths([1], [1, 2]) == ['']


def test_every_config_has_a_record():
    configs = {record_path(config) for config in shipped_configs()}
    records = set(RECORD_ROOT.glob('*/*.json'))
    assert configs, f'no configs found under {CONFIG_ROOT}'
    assert configs == records, (
        f'configs without a record: {sorted(map(str, configs - records))}; '
        f'records without a config: {sorted(map(str, records - configs))}. '
        'Run python tests/test_configs/test_resolved_configs.py to record '
        'new configs, delete the records of removed ones.')


@pytest.mark.parametrize(
    'config',
    shipped_configs(),
    ids=lambda path: str(path.relative_to(CONFIG_ROOT)))
def test_config_resolves_as_recorded(config):
    record = record_path(config)
    assert record.is_file(), f'{record} missing: see the module docstring'
    expected = json.loads(record.read_text())
    resolved = json.loads(resolve(config))
    changed = differing_paths(resolved, expected)
    assert not changed, (
        f'{config.relative_to(REPO_ROOT)} no longer resolves to '
        f'{record.relative_to(REPO_ROOT)}; changed: {changed}. If the change '
        'is meant, rerun python tests/test_configs/test_resolved_configs.py '
        'and review the diff of the record.')


def write_records() -> None:
    """Write the record of every shipped config (the script entry point)."""
    for config in shipped_configs():
        record = record_path(config)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(resolve(config))
        print(f'{record.relative_to(REPO_ROOT)}')


if __name__ == '__main__':
    write_records()
