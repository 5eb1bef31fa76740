"""Fold batch norms into the preceding convolutions before testing."""
from mmcv.cnn import fuse_conv_bn
from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from .model_parts import model_parts, test_model


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
        model = test_model(runner)
        if not self.modules:
            fuse_conv_bn(model)
            return
        for part in model_parts(model, self.modules, type(self).__name__):
            fuse_conv_bn(part)
