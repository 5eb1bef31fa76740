"""The checkpoint files of a work dir: atomic writes, temporary names, which
checkpoints are complete, what ``--resume`` continues from, and what a full
disk means for them.

:class:`~mmcentermask.engine.hooks.CrashSafeCheckpointHook` writes each
checkpoint to a hidden temporary file and renames it, and points
``work_dir/last_checkpoint`` at it. The functions here hold the rules that the
hook applies when it saves and when a run is resumed:

* :func:`resume_checkpoint`: ``last_checkpoint`` may name a file that is gone
  (deleted by hand, or a copied work dir) or incomplete; ``--resume`` then
  continues from the newest complete checkpoint of the folder, with a warning
  naming both, or stops naming ``last_checkpoint``, what it says and the fix.
* :func:`disk_full_error`: a save that fills the disk stops training with the
  folder, the free space, the size a checkpoint needs and the last complete
  checkpoint (MMEngine's own error names neither file nor folder).

A checkpoint is *complete* when it ends with the central directory of
``torch.save``'s zip archive (:func:`is_complete_checkpoint`): a write that was
cut short loses the end of the file.
"""
import errno
import glob
import os
import os.path as osp
import re
import shutil
import zipfile
from typing import List, Optional, Tuple

#: Suffix of the temporary file a checkpoint (or ``last_checkpoint``) is
#: written to before it is renamed.
TMP_SUFFIX = '.tmp'
#: The file in the work dir that names the checkpoint ``--resume`` loads.
LAST_CHECKPOINT = 'last_checkpoint'
#: ``errno`` values of a write that found no room (disk full, quota).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def temporary_name(filename: str) -> str:
    """``'.iter_3.pth.tmp'`` for ``'iter_3.pth'``: hidden, never a
    checkpoint name."""
    return '.' + filename + TMP_SUFFIX


def fsync_replace(tmp_path: str, path: str) -> None:
    """Flush ``tmp_path`` to disk and rename it to ``path`` atomically."""
    with open(tmp_path, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, path)
    try:  # make the rename itself durable (POSIX; not possible on Windows)
        fd = os.open(osp.dirname(path) or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_if_present(path: str) -> bool:
    """Delete ``path`` if it is a file; whether it was there."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename; the
    temporary file is removed when the write fails."""
    tmp_path = osp.join(osp.dirname(path), temporary_name(osp.basename(path)))
    try:
        with open(tmp_path, 'w') as f:
            f.write(text)
        fsync_replace(tmp_path, path)
    except BaseException:
        remove_if_present(tmp_path)
        raise


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` archive (its zip central
    directory, written last, is there)."""
    return osp.isfile(path) and zipfile.is_zipfile(path)


def checkpoint_steps(folder: str, filename_tmpl: str) -> List[Tuple[int, str]]:
    """``(step, path)`` of the files named by ``filename_tmpl`` (e.g.
    ``'iter_{}.pth'``) in ``folder``, oldest step first."""
    head, tail = filename_tmpl.split('{}')
    pattern = re.compile(re.escape(head) + r'(\d+)' + re.escape(tail) + '$')
    steps = []
    for path in glob.glob(osp.join(glob.escape(folder), head + '*' + tail)):
        match = pattern.match(osp.basename(path))
        if match:
            steps.append((int(match.group(1)), path))
    return sorted(steps)


def newest_complete_checkpoint(folder: str,
                               filename_tmpl: str) -> Optional[str]:
    """The complete checkpoint of ``folder`` with the highest step, if any."""
    for _, path in reversed(checkpoint_steps(folder, filename_tmpl)):
        if is_complete_checkpoint(path):
            return path
    return None


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """What ``work_dir/last_checkpoint`` says (stripped); ``None`` if there
    is no such file."""
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip()


def _problem(named: str) -> Optional[str]:
    """Why the file ``last_checkpoint`` names cannot be resumed, or None."""
    if not named:
        return 'is empty (it names no file)'
    if not osp.exists(named):
        return f'names {named}, which does not exist'
    if not is_complete_checkpoint(named):
        return (f'names {named}, which is incomplete (not a whole torch.save '
                'archive: a write that was cut short)')
    return None


def resume_checkpoint(work_dir: str, folder: str,
                      filename_tmpl: str) -> Tuple[Optional[str], str]:
    """The checkpoint ``--resume`` continues from, when it is not simply
    the one ``work_dir/last_checkpoint`` names.

    Args:
        work_dir (str): The run's work dir (holds ``last_checkpoint``).
        folder (str): Where the run saves its checkpoints.
        filename_tmpl (str): Checkpoint names, e.g. ``'iter_{}.pth'``.

    Returns:
        tuple[str | None, str]: ``(None, '')`` when ``last_checkpoint`` names
        a complete checkpoint, or when there is neither ``last_checkpoint``
        nor a checkpoint (MMEngine then starts from the beginning);
        otherwise the newest complete checkpoint of ``folder`` and the
        warning to log.

    Raises:
        FileNotFoundError: ``last_checkpoint`` names a missing or incomplete
            file and ``folder`` has no complete checkpoint; the message names
            ``last_checkpoint``, what it says and the fix.
    """
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    named = read_last_checkpoint(work_dir)
    if named is None:
        problem = f'there is no {pointer}'
    else:
        reason = _problem(named)
        if reason is None:
            return None, ''
        problem = f'{pointer} {reason}'
    fallback = newest_complete_checkpoint(folder, filename_tmpl)
    if fallback is not None:
        return fallback, (
            f'{problem}; resuming from {fallback}, the newest complete '
            f'checkpoint in {folder}.')
    if named is None:
        return None, ''
    raise FileNotFoundError(
        f'Cannot resume: {problem} (it says {named!r}), and {folder} holds '
        f'no complete {filename_tmpl.format("*")} to continue from. To '
        f'train from the beginning, delete {pointer} or train without '
        '--resume; to continue from a checkpoint elsewhere, give its path: '
        '`--resume PATH` (resume=True, load_from=PATH in a config).')


def format_size(num_bytes: float) -> str:
    """``'20.0 MiB'``: a size in bytes in binary units."""
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if num_bytes < 1024 or unit == 'GiB':
            break
        num_bytes /= 1024
    return f'{num_bytes:.0f} bytes' if unit == 'bytes' else (
        f'{num_bytes:.1f} {unit}')


def disk_full_error(error: OSError, path: str, written: int,
                    previous: Optional[str], last_good: Optional[str],
                    max_keep_ckpts: int) -> OSError:
    """The error to raise when writing checkpoint ``path`` found no room.

    Call it after the temporary file was removed, so that the free space it
    reports is what the next try has.

    Args:
        error (OSError): The write's error (``ENOSPC`` or ``EDQUOT``).
        path (str): The checkpoint that was being saved.
        written (int): Bytes written before the error, in bytes.
        previous (str, optional): An earlier complete checkpoint of the run
            (its size estimates what one needs).
        last_good (str, optional): What ``last_checkpoint`` names.
        max_keep_ckpts (int): The hook's ``max_keep_ckpts``.

    Returns:
        OSError: with ``error``'s errno and a message naming the folder, the
        free space, the size needed, the last complete checkpoint and the fix.
    """
    folder = osp.dirname(path) or '.'
    free = shutil.disk_usage(folder).free
    if previous is not None:
        size = osp.getsize(previous)
        need = (f'a checkpoint needs about {format_size(size)} (the size of '
                f'{osp.basename(previous)})')
    else:
        size = None
        need = (f'a checkpoint needs more than the {format_size(written)} '
                'written before the disk filled')
    if max_keep_ckpts > 0:
        room = (f'The checkpoint hook writes a new checkpoint before it '
                f'deletes the oldest of the max_keep_ckpts={max_keep_ckpts} '
                f'it keeps, so the folder needs room for '
                f'{max_keep_ckpts + 1} checkpoints')
        room += (f' (about {format_size(size * (max_keep_ckpts + 1))}).'
                 if size is not None else '.')
    else:
        room = ('Every checkpoint is kept (max_keep_ckpts='
                f'{max_keep_ckpts}); set max_keep_ckpts to keep fewer.')
    kept = (f'The last complete checkpoint, {last_good}, is intact and '
            f'{LAST_CHECKPOINT} names it.'
            if last_good else 'No checkpoint of this run is complete yet.')
    return OSError(
        error.errno, f'{os.strerror(error.errno)}: could not save checkpoint '
        f'{osp.basename(path)} in {osp.abspath(folder)}: {format_size(free)} '
        f'are free there and {need}. The incomplete '
        f'{temporary_name(osp.basename(path))} was removed. {kept} {room} '
        'Free space there, or save to a larger disk (--work-dir, or out_dir '
        'of the checkpoint hook), then continue with --resume.')
