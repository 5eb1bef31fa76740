"""MMEngine's ``CheckpointHook`` made safe against a kill at any moment, a full
disk, and ``--resume`` into a state that does not fit.

MMEngine 0.10.7 (``CheckpointHook._save_checkpoint_with_step``) deletes the
oldest kept checkpoint *before* it writes the new one, and writes the new file
in place. With ``max_keep_ckpts=1`` a kill during the write leaves no complete
checkpoint, and ``work_dir/last_checkpoint`` names a file that is missing or
truncated, so ``--resume`` cannot continue. This hook changes the order only:

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
are removed when training starts again, before the first save.

A save that finds the disk full (``ENOSPC``, ``EDQUOT``) removes its temporary
file and stops training with the folder, its free space, the size a checkpoint
needs and the last complete checkpoint, which stays intact
(:func:`~.checkpoint_files.disk_full_error`). The folder needs room for
``max_keep_ckpts + 1`` checkpoints, since the old one goes only after the new
one is complete.

``--resume`` (MMEngine's auto resume, from ``last_checkpoint``) continues from
the newest complete ``iter_*.pth`` / ``epoch_*.pth`` of the folder, with a
warning naming both, when ``last_checkpoint`` names a file that is missing or
incomplete, or is missing itself; with no complete checkpoint to fall back to,
the error names ``last_checkpoint``, what it says and the fix
(:func:`~.checkpoint_files.resume_checkpoint`). Every ``--resume`` refuses a
checkpoint whose tensors do not fit the model (missing, or another shape, e.g.
after editing ``num_classes``): MMEngine would re-initialise those layers and
go on training (:func:`mmcentermask.utils.weight_check.check_resume_fit`).

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
import os.path as osp
import re
from collections import OrderedDict
from typing import Optional

import torch
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper

from mmcentermask.utils.weight_check import check_resume_fit
from .checkpoint_files import (DISK_FULL_ERRNOS, LAST_CHECKPOINT,
                               disk_full_error, fsync_replace,
                               newest_complete_checkpoint,
                               read_last_checkpoint, remove_if_present,
                               resume_checkpoint, temporary_name,
                               write_text_atomic)


def _model_state_dict(checkpoint: dict) -> 'OrderedDict[str, torch.Tensor]':
    """The model tensors of a loaded checkpoint, keys as
    ``Runner.load_checkpoint`` gives them to the model (no ``module.``)."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in state_dict.items())


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose saves survive ``kill -9`` at any moment.

    Takes every argument of :class:`mmengine.hooks.CheckpointHook`
    (``interval``, ``by_epoch``, ``max_keep_ckpts``, ``save_best``, ...),
    plus:

    Args:
        save_rng_state (bool): Store torch's generator state in each
            checkpoint and restore it on resume. Defaults to True.
    """

    def __init__(self, *args, save_rng_state: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.save_rng_state = save_rng_state
        self._resumed_rng: Optional[dict] = None
        self._resumed_iter: Optional[int] = None
        self._resume_from: Optional[str] = None

    # -- resuming
    def _checkpoint_dir(self, runner) -> str:
        """Where this run's checkpoints are (``CheckpointHook.before_train``
        resolves ``out_dir`` the same way, later)."""
        if self.out_dir is None or self.out_dir == runner.work_dir:
            return runner.work_dir
        return osp.join(self.out_dir,
                        osp.basename(runner.work_dir.rstrip(osp.sep)))

    def before_run(self, runner) -> None:
        """Choose the checkpoint ``--resume`` continues from.

        MMEngine keeps the choice in ``Runner._resume`` / ``_load_from``
        (its ``EMAHook`` reads them too); with auto resume and a
        ``last_checkpoint`` that names no complete file, ``_load_from`` is set
        to the newest complete checkpoint, which ``Runner.load_or_resume``
        then resumes from.
        """
        self._resume_from = None
        if not getattr(runner, '_resume', False):
            return
        if runner._load_from is not None:
            self._resume_from = runner._load_from
            return
        folder = self._checkpoint_dir(runner)
        if not isinstance(
                get_file_backend(folder, backend_args=self.backend_args),
                LocalBackend):
            return
        fallback, warning = resume_checkpoint(runner.work_dir, folder,
                                              self.filename_tmpl)
        if fallback is not None:
            runner.logger.warning(warning)
            runner._load_from = fallback
        self._resume_from = fallback or read_last_checkpoint(runner.work_dir)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if getattr(runner, '_resume', False):
            model = runner.model.module if is_model_wrapper(
                runner.model) else runner.model
            check_resume_fit(model, _model_state_dict(checkpoint),
                             self._resume_from or 'the checkpoint')
        # Runner.resume may re-seed after loading, so the state is applied in
        # before_train, and only when training continues from this checkpoint.
        self._resumed_rng = checkpoint.get('rng_state')
        self._resumed_iter = checkpoint.get('meta', {}).get('iter')

    # -- random number generators
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.save_rng_state:
            state = dict(torch=torch.get_rng_state())
            if torch.cuda.is_available():
                state['cuda'] = torch.cuda.get_rng_state_all()
            checkpoint['rng_state'] = state

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

    def _remove_stale_temporaries(self, runner) -> None:
        checkpoints = temporary_name(self.filename_tmpl.format('*'))
        pointer = temporary_name(LAST_CHECKPOINT)
        patterns = (osp.join(glob.escape(self.out_dir), checkpoints),
                    osp.join(glob.escape(runner.work_dir), pointer))
        for pattern in patterns:
            for path in glob.glob(pattern):
                remove_if_present(path)
                runner.logger.warning(
                    f'Removed {path}, left by a save that did not finish '
                    '(a killed run or a full disk).')

    def _keep(self, runner, step: int) -> Optional[str]:
        """Add ``step`` to MMEngine's kept steps; the checkpoint that falls
        out of ``max_keep_ckpts`` (deleted once the new one is saved)."""
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
        return stale

    def _write(self, runner, meta: dict) -> None:
        """Save the checkpoint ``self.last_ckpt`` through its temporary file.

        Raises:
            OSError: the write failed; the temporary file is removed, and a
                full disk is explained (:func:`disk_full_error`).
        """
        tmp_filename = temporary_name(osp.basename(self.last_ckpt))
        tmp_path = osp.join(self.out_dir, tmp_filename)
        try:
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
            if is_main_process():
                fsync_replace(tmp_path, self.last_ckpt)
        except OSError as error:
            written = osp.getsize(tmp_path) if osp.isfile(tmp_path) else 0
            remove_if_present(tmp_path)
            if error.errno not in DISK_FULL_ERRNOS:
                raise
            raise disk_full_error(
                error, self.last_ckpt, written,
                newest_complete_checkpoint(self.out_dir, self.filename_tmpl),
                read_last_checkpoint(runner.work_dir),
                self.max_keep_ckpts) from error

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        stale = self._keep(runner, step)
        self.last_ckpt = osp.join(self.out_dir,
                                  self.filename_tmpl.format(step))
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._write(runner, meta)
        if not is_main_process():
            return
        write_text_atomic(
            osp.join(runner.work_dir, LAST_CHECKPOINT), self.last_ckpt)
        if stale is not None and stale != self.last_ckpt:
            remove_if_present(stale)
