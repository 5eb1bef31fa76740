"""ReuseCPUMemoryHook: applies reuse_cpu_memory before a CPU run only."""
from types import SimpleNamespace

import pytest
from torch import nn

from mmcentermask.engine.hooks import reuse_cpu_memory_hook
from mmcentermask.engine.hooks.reuse_cpu_memory_hook import ReuseCPUMemoryHook


@pytest.fixture
def calls(monkeypatch):
    """Record calls instead of changing this test process's malloc."""
    record = []
    monkeypatch.setattr(reuse_cpu_memory_hook, 'reuse_cpu_memory',
                        lambda: record.append('called') or True)
    return record


def test_cpu_model(calls):
    ReuseCPUMemoryHook().before_run(SimpleNamespace(model=nn.Conv2d(3, 4, 1)))
    assert calls == ['called']


def test_model_elsewhere_is_left_alone(calls):
    model = nn.Conv2d(3, 4, 1, device='meta')
    ReuseCPUMemoryHook().before_run(SimpleNamespace(model=model))
    assert calls == []
