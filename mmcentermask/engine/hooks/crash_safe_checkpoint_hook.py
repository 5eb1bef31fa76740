"""MMEngine's ``CheckpointHook`` made safe against a kill at any moment.

MMEngine 0.10.7 (``CheckpointHook._save_checkpoint_with_step``) deletes the
oldest kept checkpoint *before* it writes the new one, and writes the new file
in place. With ``max_keep_ckpts=1`` a kill during the write leaves no complete
checkpoint, and ``work_dir/last_checkpoint`` names a file that is missing or
truncated, so ``--resume``
cannot continue. This hook changes the order only:

1. write the new checkpoint to a hidden temporary file ``.iter_N.pth.tmp`` next
   to it, flush it to disk, and rename it to ``iter_N.pth`` (``os.replace`` is
   atomic);
2. point ``last_checkpoint`` at it (also written to a temporary file and
   renamed);
3. only then delete the checkpoint that fell out of ``max_keep_ckpts``.

A kill at any moment therefore leaves ``last_checkpoint`` naming a complete
file. The kept-checkpoint bookkeeping stored in the checkpoint (``message_hub``
``keep_ckpt_ids``) is MMEngine's. A kill between steps 2 and 3 leaves one extra
old checkpoint on disk (never a missing one). Temporary files of a killed save
are removed when training starts again.

It also stores torch's random number generator state (CPU, and CUDA when
available) in each checkpoint (``checkpoint['rng_state']``) and restores it
when training resumes from that checkpoint, so the iterations after
``--resume`` draw the same random numbers as an uninterrupted run (MMEngine
restores the model, optimizer, schedulers and message hub, and replays the data
sampler; it re-seeds torch instead of restoring its state). numpy's and
Python's generators are reproduced by MMEngine's replay of the skipped batches,
since MMDetection's transforms are their only users in the main process.

Only local ``out_dir`` folders get this treatment; other storage backends fall
back to MMEngine's behaviour.
"""
import glob
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmdet.registry import HOOKS

TMP_SUFFIX = '.tmp'


def _fsync_replace(tmp_path: str, path: str) -> None:
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


def _write_text_atomic(path: str, text: str) -> None:
    tmp_path = osp.join(
        osp.dirname(path), '.' + osp.basename(path) + TMP_SUFFIX)
    with open(tmp_path, 'w') as f:
        f.write(text)
    _fsync_replace(tmp_path, path)


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose saves survive ``kill -9`` at any moment.

    Takes every argument of :class:`mmengine.hooks.CheckpointHook`
    (``interval``,
    ``by_epoch``, ``max_keep_ckpts``, ``save_best``, ...), plus:

    Args:
        save_rng_state (bool): Store torch's generator state in each checkpoint
        and
            restore it on resume. Defaults to True.
    """

    def __init__(self, *args, save_rng_state: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.save_rng_state = save_rng_state
        self._resumed_rng: Optional[dict] = None
        self._resumed_iter: Optional[int] = None

    # -- random number generators
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.save_rng_state:
            state = dict(torch=torch.get_rng_state())
            if torch.cuda.is_available():
                state['cuda'] = torch.cuda.get_rng_state_all()
            checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.resume may re-seed after loading, so the state is applied in
        # before_train, and only when training continues from this checkpoint.
        self._resumed_rng = checkpoint.get('rng_state')
        self._resumed_iter = checkpoint.get('meta', {}).get('iter')

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._is_local() and is_main_process():
            self._remove_stale_temporaries(runner)
        if (self.save_rng_state and self._resumed_rng is not None
                and runner.iter > 0 and runner.iter == self._resumed_iter):
            torch.set_rng_state(self._resumed_rng['torch'])
            if 'cuda' in self._resumed_rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._resumed_rng['cuda'])
            runner.logger.info(
                'Restored the random number generator state of iteration '
                f'{runner.iter}.')
        self._resumed_rng = None

    # -- saving
    def _is_local(self) -> bool:
        return isinstance(getattr(self, 'file_backend', None), LocalBackend)

    def _tmp_name(self, filename: str) -> str:
        return '.' + filename + TMP_SUFFIX

    def _remove_stale_temporaries(self, runner) -> None:
        pattern = osp.join(self.out_dir,
                           self._tmp_name(self.filename_tmpl.format('*')))
        for path in glob.glob(pattern):
            os.remove(path)
            runner.logger.warning(
                f'Removed {path}, an incomplete checkpoint of a killed run.')

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        stale = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale = osp.join(
                    self.out_dir,
                    self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp_filename = self._tmp_name(ckpt_filename)
        runner.save_checkpoint(
            self.out_dir,
            tmp_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        _fsync_replace(osp.join(self.out_dir, tmp_filename), self.last_ckpt)
        _write_text_atomic(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if stale is not None and stale != self.last_ckpt:
            if osp.isfile(stale):
                os.remove(stale)
