"""MMEngine checkpoints load on torch >= 2.6 once mmcentermask is imported."""
import copy
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner

import mmcentermask  # noqa: F401
from mmcentermask.utils import (load_local_checkpoint,
                                register_local_checkpoint_loader)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)  # (B, 1); default_collate stacked them
        if mode == 'loss':
            return dict(loss=((out.squeeze(-1) - labels)**2).mean())
        return out


def toy_dataset(n=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return [dict(inputs=x[i], labels=x[i].sum()) for i in range(n)]


def runner_cfg(work_dir, **kwargs):
    cfg = dict(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=toy_dataset(), batch_size=2,
                              sampler=dict(type='DefaultSampler',
                                           shuffle=False),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        log_level='WARNING')
    cfg.update(kwargs)
    return cfg


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('toy')
    cfg = runner_cfg(work_dir)
    cfg['train_cfg'] = dict(by_epoch=True, max_epochs=1)
    runner = Runner(**cfg)
    runner.train()
    return work_dir, runner.model.state_dict()


def test_checkpoint_holds_non_tensor_objects(trained):
    """The file really needs the fix: torch's safe loader refuses it."""
    work_dir, _ = trained
    with pytest.raises(pickle.UnpicklingError):
        torch.load(work_dir / 'epoch_1.pth', weights_only=True)


def test_local_loader_is_registered():
    assert CheckpointLoader._schemes[''] is load_local_checkpoint


def test_original_loader_fails_and_ours_loads(trained, monkeypatch):
    work_dir, _ = trained
    ckpt = str(work_dir / 'epoch_1.pth')
    schemes = copy.copy(CheckpointLoader._schemes)
    monkeypatch.setattr(CheckpointLoader, '_schemes', schemes)
    from mmengine.runner.checkpoint import load_from_local
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local,
                                     force=True)
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(ckpt)
    register_local_checkpoint_loader()
    assert 'message_hub' in CheckpointLoader.load_checkpoint(ckpt)


def test_load_from(trained, tmp_path):
    work_dir, state = trained
    runner = Runner(**runner_cfg(tmp_path,
                                 load_from=str(work_dir / 'epoch_1.pth')))
    runner.load_or_resume()
    for key, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_resume_continues_epoch_and_optimizer(trained, tmp_path):
    work_dir, _ = trained
    runner = Runner(**runner_cfg(tmp_path, resume=True,
                                 load_from=str(work_dir / 'epoch_1.pth')))
    runner.train()
    assert runner.epoch == 2
    assert runner.iter == 8
    assert (tmp_path / 'epoch_2.pth').exists()
    assert not (tmp_path / 'epoch_1.pth').exists()


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_local_checkpoint(str(tmp_path / 'nope.pth'))
