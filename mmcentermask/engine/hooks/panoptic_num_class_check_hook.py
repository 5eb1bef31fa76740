"""Check a panoptic model's class counts against its datasets.

MMDetection's :class:`~mmdet.engine.hooks.NumClassCheckHook` compares every
head's ``num_classes`` with the length of the dataset's ``classes``; a
panoptic dataset's ``classes`` are the thing and the stuff classes together,
which no head of a panoptic model has, so that hook cannot be used there.
A panoptic config whose ``num_classes`` or ``num_stuff_classes`` is not the
dataset's trains on silently wrong labels (MMDetection's panoptic targets put
stuff label ``num_things + k`` where the heads expect another count).
"""
from typing import Sequence

from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner


@HOOKS.register_module()
class PanopticNumClassCheckHook(Hook):
    """Before each training and validation epoch, check that the model's
    thing count (``bbox_head.num_classes``) and stuff count
    (``num_stuff_classes``) equal the lengths of the dataset's
    ``thing_classes`` and ``stuff_classes``.

    Raises:
        ValueError: A count differs (naming both and the fix), or the
            dataset has no ``thing_classes`` / ``stuff_classes``.
    """

    def before_train_epoch(self, runner: Runner) -> None:
        self._check(runner, 'train')

    def before_val_epoch(self, runner: Runner) -> None:
        self._check(runner, 'val')

    @staticmethod
    def _check(runner: Runner, mode: str) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        dataset = getattr(runner, f'{mode}_dataloader').dataset
        metainfo = dataset.metainfo
        if 'thing_classes' not in metainfo or 'stuff_classes' not in metainfo:
            raise ValueError(
                f'the {mode} dataset ({type(dataset).__name__}) has no '
                'thing_classes / stuff_classes in its metainfo: a panoptic '
                'model needs a panoptic dataset such as '
                'CheckedCocoPanopticDataset')
        counts = dict(
            num_classes=(model.bbox_head.num_classes,
                         metainfo['thing_classes'], 'thing_classes'),
            num_stuff_classes=(model.num_stuff_classes,
                               metainfo['stuff_classes'], 'stuff_classes'))
        problems = [
            f'{key}={value} but the {mode} dataset has {len(names)} '
            f'{field} {_shown(names)}'
            for key, (value, names, field) in counts.items()
            if value != len(names)
        ]
        if problems:
            raise ValueError(
                '; '.join(problems) + '. Set num_classes (things) and '
                'num_stuff_classes at the top of the config to the lengths '
                "of the dataset's metainfo thing_classes and stuff_classes.")


def _shown(names: Sequence[str], most: int = 6) -> str:
    """The first ``most`` names, and how many more."""
    names = list(names)
    more = f' and {len(names) - most} more' if len(names) > most else ''
    return f'{names[:most]}{more}'
