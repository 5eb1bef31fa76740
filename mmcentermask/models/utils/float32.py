"""Run numerically sensitive head methods in float32 under mixed precision.

With ``--amp`` (MMEngine's ``AmpOptimWrapper``, ``torch.autocast``) the
convolutions return float16 / bfloat16 maps. Losses summed over thousands of
locations, box coordinates of a 1333-pixel image (bfloat16 keeps 8 bits:
steps of 8 px above 1024) and class offsets of the batched NMS (80 classes x
1334 px overflow float16) must not be computed in those types, so the methods
that compute them take float32 inputs and run with autocast off. Without
autocast and with float32 inputs this changes nothing (``Tensor.float`` of a
float32 tensor is the tensor itself).
"""
import functools
from typing import Any, Callable, Optional

import torch
from torch import Tensor


def to_float32(value: Any) -> Any:
    """``value`` with every floating-point tensor cast to float32.

    Args:
        value: A tensor, or a list / tuple nesting tensors; anything else
            (numbers, configs, :obj:`InstanceData`) is returned unchanged.

    Returns:
        The same structure; integer and bool tensors keep their type.
    """
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if type(value) in (list, tuple):
        return type(value)(to_float32(item) for item in value)
    return value


def _first_tensor(value: Any) -> Optional[Tensor]:
    """The first tensor in ``value`` (nested lists / tuples, depth first),
    or None."""
    if isinstance(value, Tensor):
        return value
    if type(value) in (list, tuple):
        for item in value:
            tensor = _first_tensor(item)
            if tensor is not None:
                return tensor
    return None


def force_float32(method: Callable) -> Callable:
    """Decorate a method so that it runs in float32 with autocast off.

    Floating-point tensors among the arguments (also inside lists and
    tuples) are cast to float32 and the method runs inside
    ``torch.autocast(device_type, enabled=False)`` for the device of the
    first tensor argument, so its own ops are not cast back down. The
    successor of mmcv 1.x's ``force_fp32``.

    Args:
        method (Callable): The method to wrap.

    Returns:
        Callable: The wrapped method.
    """

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        args = to_float32(args)
        kwargs = {key: to_float32(value) for key, value in kwargs.items()}
        tensor = _first_tensor((args, tuple(kwargs.values())))
        device_type = tensor.device.type if tensor is not None else 'cpu'
        with torch.autocast(device_type, enabled=False):
            return method(*args, **kwargs)

    return wrapper
