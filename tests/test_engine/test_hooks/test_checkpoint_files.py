"""checkpoint_files: which checkpoints are complete, what --resume continues
from when last_checkpoint is stale, sizes in words, atomic text writes."""
import os

import pytest
import torch

from mmcentermask.engine.hooks import checkpoint_files
from mmcentermask.engine.hooks.checkpoint_files import (
    checkpoint_steps, format_size, is_complete_checkpoint,
    newest_complete_checkpoint, resume_checkpoint, write_text_atomic)

TMPL = 'iter_{}.pth'


def save(path, step):
    torch.save({'meta': {'iter': step}}, path)
    return str(path)


@pytest.fixture
def folder(tmp_path):
    """iter_2 and iter_10 complete, iter_11 torn, iter_12 empty, plus files
    that are no checkpoints of the template."""
    save(tmp_path / 'iter_2.pth', 2)
    data = open(save(tmp_path / 'iter_10.pth', 10), 'rb').read()
    (tmp_path / 'iter_11.pth').write_bytes(data[:len(data) // 2])
    (tmp_path / 'iter_12.pth').write_bytes(b'')
    (tmp_path / '.iter_13.pth.tmp').write_bytes(data)
    (tmp_path / 'epoch_14.pth').write_bytes(data)
    (tmp_path / 'iter_x.pth').write_bytes(data)
    return tmp_path


def test_steps_sort_by_number_and_skip_other_names(folder):
    assert [step for step, _ in checkpoint_steps(str(folder), TMPL)
            ] == [2, 10, 11, 12]
    assert [s
            for s, _ in checkpoint_steps(str(folder), 'epoch_{}.pth')] == [14]


def test_newest_complete_checkpoint_skips_torn_files(folder):
    assert is_complete_checkpoint(str(folder / 'iter_10.pth'))
    assert not is_complete_checkpoint(str(folder / 'iter_11.pth'))
    assert not is_complete_checkpoint(str(folder / 'iter_12.pth'))
    assert newest_complete_checkpoint(str(folder),
                                      TMPL) == str(folder / 'iter_10.pth')
    assert newest_complete_checkpoint(str(folder / 'none'), TMPL) is None


def test_resume_keeps_a_complete_last_checkpoint(folder):
    (folder / 'last_checkpoint').write_text(str(folder / 'iter_2.pth'))
    assert resume_checkpoint(str(folder), str(folder), TMPL) == (None, '')


@pytest.mark.parametrize('content,problem', [
    ('{folder}/iter_20.pth', 'names {folder}/iter_20.pth, which does not '
     'exist'),
    ('{folder}/iter_11.pth', 'names {folder}/iter_11.pth, which is '
     'incomplete'),
    ('', 'is empty (it names no file)'),
])
def test_resume_falls_back_from_a_stale_last_checkpoint(
        folder, content, problem):
    (folder / 'last_checkpoint').write_text(content.format(folder=folder))
    path, warning = resume_checkpoint(str(folder), str(folder), TMPL)
    assert path == str(folder / 'iter_10.pth')
    assert warning.startswith(
        f'{folder / "last_checkpoint"} {problem.format(folder=folder)}')
    assert warning.endswith(
        f'resuming from {path}, the newest complete checkpoint in {folder}.')


def test_resume_without_last_checkpoint(folder, tmp_path_factory):
    path, warning = resume_checkpoint(str(folder), str(folder), TMPL)
    assert path == str(folder / 'iter_10.pth')
    assert warning.startswith(f'there is no {folder / "last_checkpoint"};')
    empty = str(tmp_path_factory.mktemp('empty'))
    assert resume_checkpoint(empty, empty, TMPL) == (None, '')


def test_stale_last_checkpoint_without_fallback_is_an_error(tmp_path):
    (tmp_path / 'last_checkpoint').write_text('old/iter_3.pth')
    with pytest.raises(FileNotFoundError) as info:
        resume_checkpoint(str(tmp_path), str(tmp_path), 'epoch_{}.pth')
    message = str(info.value)
    assert f"it says 'old/iter_3.pth'), and {tmp_path} holds no complete " \
        'epoch_*.pth' in message
    assert f'delete {tmp_path / "last_checkpoint"}' in message


@pytest.mark.parametrize('num_bytes,text', [(0, '0 bytes'),
                                            (1023, '1023 bytes'),
                                            (1536, '1.5 KiB'),
                                            (20 * 2**20, '20.0 MiB'),
                                            (3 * 2**40, '3072.0 GiB')])
def test_format_size(num_bytes, text):
    assert format_size(num_bytes) == text


def test_text_write_leaves_no_temporary_on_failure(tmp_path, monkeypatch):
    path = tmp_path / 'last_checkpoint'
    write_text_atomic(str(path), 'iter_1.pth')

    def no_room(tmp_path, path):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(checkpoint_files, 'fsync_replace', no_room)
    with pytest.raises(OSError):
        write_text_atomic(str(path), 'iter_2.pth')
    assert os.listdir(tmp_path) == ['last_checkpoint']
    assert path.read_text() == 'iter_1.pth'
