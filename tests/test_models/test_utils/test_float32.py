"""force_float32: float32 arguments and autocast off inside the method."""
import torch

from mmcentermask.models.utils import force_float32


class Head:

    @force_float32
    def compute(self, maps, labels, scale=2.0, extra=None):
        """What the method sees, and one matmul (autocast lowers matmuls)."""
        return dict(
            map_dtypes=[m.dtype for m in maps],
            labels_dtype=labels.dtype,
            scale=scale,
            extra_dtype=extra.dtype,
            matmul_dtype=(maps[0] @ maps[0]).dtype,
            autocast=torch.is_autocast_enabled('cpu'))


def test_arguments_cast_and_autocast_off():
    maps = (torch.ones(2, 2, dtype=torch.bfloat16),
            torch.ones(2, 2, dtype=torch.float16))
    labels = torch.zeros(2, dtype=torch.long)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
        seen = Head().compute(
            maps, labels, extra=torch.ones(1, dtype=torch.float16))
        assert torch.is_autocast_enabled('cpu')  # restored after the call
    assert seen == dict(
        map_dtypes=[torch.float32, torch.float32],
        labels_dtype=torch.long,
        scale=2.0,
        extra_dtype=torch.float32,
        matmul_dtype=torch.float32,
        autocast=False)


def test_float32_arguments_are_passed_as_they_are():
    maps = [torch.ones(2, 2)]
    calls = []

    class Recorder:

        @force_float32
        def compute(self, maps):
            calls.append(maps[0])

    Recorder().compute(maps)
    assert calls[0] is maps[0]
