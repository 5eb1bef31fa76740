"""The model a test-time hook changes, and the named parts of it."""
from typing import List, Tuple

from mmengine.model import BaseTTAModel, is_model_wrapper
from torch import nn


def test_model(runner) -> nn.Module:
    """``runner.model`` without its DDP wrapper and TTA wrapper
    (``tools/test.py --tta``)."""
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    if isinstance(model, BaseTTAModel):
        model = model.module
    return model


def model_parts(model: nn.Module, names: Tuple[str, ...],
                hook_name: str) -> List[nn.Module]:
    """The attributes ``names`` of ``model``.

    Raises:
        AttributeError: A name the model does not have, with the hook and
            the model class.
    """
    for name in names:
        if not hasattr(model, name):
            raise AttributeError(
                f'{hook_name}(modules={names}): the model '
                f'{type(model).__name__} has no {name!r}')
    return [getattr(model, name) for name in names]
