"""CompileNetworkHook: the network parts compiled in place before testing,
same outputs and state-dict keys."""
from types import SimpleNamespace

import pytest
import torch
from detector_utils import tiny_cfg
from mmdet.registry import HOOKS, MODELS
from mmdet.utils import register_all_modules


@pytest.fixture
def model():
    register_all_modules()
    torch.manual_seed(0)
    detector = MODELS.build(tiny_cfg())
    detector.init_weights()
    return detector.eval()


def test_parts_compiled_same_features(model):
    """Backend 'aot_eager' traces the graph as inductor does (without the
    C++ code generation, which takes minutes): the parts run through it,
    give the eager features and keep their state-dict keys."""
    torch._dynamo.reset()
    x = torch.randn(1, 3, 96, 128)
    keys = list(model.state_dict())
    with torch.no_grad():
        before = model.extract_feat(x)
    hook = HOOKS.build(dict(type='CompileNetworkHook', backend='aot_eager'))
    hook.before_test(SimpleNamespace(model=model))
    assert model.backbone._compiled_call_impl is not None
    assert model.neck._compiled_call_impl is not None
    assert model.bbox_head._compiled_call_impl is None
    with torch.no_grad():
        after = model.extract_feat(x)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert list(model.state_dict()) == keys


def test_no_parts_and_unknown_part_are_named(model):
    from mmcentermask.engine.hooks import CompileNetworkHook
    with pytest.raises(ValueError, match='name the network parts'):
        CompileNetworkHook(modules=())
    with pytest.raises(AttributeError, match="has no 'fpn'"):
        CompileNetworkHook(modules=('fpn', )).before_test(
            SimpleNamespace(model=model))
