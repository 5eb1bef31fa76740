"""Compile the network parts of a model with ``torch.compile`` before
testing."""
from typing import Tuple

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from .model_parts import model_parts, test_model


@HOOKS.register_module()
class CompileNetworkHook(Hook):
    """Compile the network parts of the model (``nn.Module.compile``, in
    place: same parameters and state-dict keys) before ``runner.test()``.

    MMEngine's ``cfg.compile`` compiles the whole ``train_step``; this hook
    is for inference, and only for the parts that are plain networks
    (backbone, FPN, the dense head's convolutions): the post-processing
    (NMS, RoI selection, mask pasting) has data-dependent shapes and stays
    eager. The first images of each new input size pay the compilation
    (about 1-2 minutes for CenterMask-Lite's backbone on 2 CPU cores;
    torch switches to dynamic shapes after the second size), so it pays
    for long test runs and fixed-size serving, not for a few images. Off
    in every config; enable with ``custom_hooks``.

    Inductor (the default backend) computes convolutions with the same
    oneDNN kernels as eager mode and fuses the elementwise operators around
    them: outputs equal up to float32 rounding.

    Args:
        modules (tuple[str]): Attributes of the model to compile. Defaults
            to ``('backbone', 'neck')``.
        **compile_kwargs: Arguments of ``torch.compile`` (``backend``,
            ``mode``, ``dynamic``, ...).
    """

    priority = 'LOWEST'  # after FuseConvBNHook: compile the folded convs

    def __init__(self, modules: Tuple[str, ...] = ('backbone', 'neck'),
                 **compile_kwargs) -> None:
        if not modules:
            raise ValueError(
                'CompileNetworkHook(modules=()): name the network parts to '
                "compile, e.g. ('backbone', 'neck')")
        self.modules = tuple(modules)
        self.compile_kwargs = compile_kwargs

    def before_test(self, runner) -> None:
        for part in model_parts(
                test_model(runner), self.modules, type(self).__name__):
            part.compile(**self.compile_kwargs)
