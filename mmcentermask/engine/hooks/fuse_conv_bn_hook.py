"""Fold batch norms into the preceding convolutions before testing."""
from mmcv.cnn import fuse_conv_bn
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmdet.registry import HOOKS


@HOOKS.register_module()
class FuseConvBNHook(Hook):
    """Fold every BatchNorm that directly follows a ``Conv2d`` (mmcv's
    :func:`~mmcv.cnn.fuse_conv_bn`) into that convolution before
    ``runner.test()``.

    In eval mode a BN is the affine map ``(x - mean) * weight / sqrt(var +
    eps) + bias``, so the folded convolution computes the same output up to
    float32 rounding with one operator less per conv. In CenterMask this is
    the backbone (the FPN and heads have no BN; BNs after deformable convs
    are left as they are). Only the test loop is affected: validation during
    training and training itself keep the unfolded model, whose frozen BN
    statistics must stay separate from the trained conv weights.

    Args:
        modules (tuple[str]): Attributes of the model to fold, e.g.
            ``('backbone', )``; empty for the whole model. Defaults to
            ``('backbone', )``.
    """

    priority = 'LOW'

    def __init__(self, modules: tuple = ('backbone', )) -> None:
        self.modules = tuple(modules)

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if isinstance(model, BaseTTAModel):  # tools/test.py --tta
            model = model.module
        if not self.modules:
            fuse_conv_bn(model)
            return
        for name in self.modules:
            if not hasattr(model, name):
                raise AttributeError(
                    f'FuseConvBNHook(modules={self.modules}): the model '
                    f'{type(model).__name__} has no {name!r}')
            fuse_conv_bn(getattr(model, name))
