"""VoVNet / VoVNetV2 backbone: variant table, parameter counts, shapes and
strides, DCN, norms, freezing, checkpointing, argument errors."""
from decimal import ROUND_HALF_UP, Decimal

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import ModulatedDeformConv2dPack
from torch.nn.modules.batchnorm import _BatchNorm

from mmcentermask.models import VoVNet
from mmcentermask.models.backbones.vovnet import VOVNET_ARCHS
from mmdet.registry import MODELS

# Hand copy of the reference spec, section 1.2 (V2) and of VoVNet.pytorch /
# timm vovnet39a, vovnet57a (V1): stem, 3x3 channels, output channels,
# layers per block, blocks per stage, depthwise, identity, eSE.
SPEC = {
    'V-19-slim-dw': ((64, 64, 64), (64, 80, 96, 112), (112, 256, 384, 512), 3,
                     (1, 1, 1, 1), True, True, True),
    'V-19-dw': ((64, 64, 64), (128, 160, 192, 224), (256, 512, 768, 1024), 3,
                (1, 1, 1, 1), True, True, True),
    'V-19-slim': ((64, 64, 128), (64, 80, 96, 112), (112, 256, 384, 512), 3,
                  (1, 1, 1, 1), False, True, True),
    'V-19': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 3,
             (1, 1, 1, 1), False, True, True),
    'V-39': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
             (1, 1, 2, 2), False, True, True),
    'V-57': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
             (1, 1, 4, 3), False, True, True),
    'V-99': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
             (1, 3, 9, 3), False, True, True),
    'V1-27-slim': ((64, 64, 128), (64, 80, 96, 112), (128, 256, 384, 512), 5,
                   (1, 1, 1, 1), False, False, False),
    'V1-39': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
              (1, 1, 2, 2), False, False, False),
    'V1-57': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
              (1, 1, 4, 3), False, False, False),
}

# Parameter counts measured here (BN weight + bias included, running
# statistics excluded). "with_cls" adds Linear(stage5 channels, 1000), the
# ImageNet classifier the spec's figures include; "spec" is the spec's figure
# in millions. The spec rounds to 0.01 M and then to 0.1 M (half up): a direct
# 0.1 M rounding differs only for V-99 (70,548,520 -> 70.5, spec 70.6).
PARAM_COUNTS = {
    'V-19-slim-dw': (1_384_752, 1_897_752, '1.9'),
    'V-19-dw': (5_518_080, 6_543_080, '6.5'),
    'V-19-slim': (2_653_136, 3_166_136, '3.2'),
    'V-19': (10_180_416, 11_205_416, '11.2'),
    'V-39': (25_184_128, 26_209_128, '26.2'),
    'V-57': (41_454_912, 42_479_912, '42.5'),
    'V-99': (69_523_520, 70_548_520, '70.6'),
    'V1-27-slim': (3_012_736, 3_525_736, None),
    'V1-39': (21_575_296, 22_600_296, None),
    'V1-57': (35_615_296, 36_640_296, None),
}

DCN = dict(type='DCNv2', deform_groups=1)
AUTHOR_DCN_STAGES = (False, True, True, True)

#: A small custom arch with identity blocks in stages 3 and 4.
TINY_ARCH = dict(
    stem_channels=(16, 16, 32),
    stage_channels=(16, 16, 16, 16),
    stage_out_channels=(32, 32, 48, 64),
    layers_per_block=2,
    blocks_per_stage=(1, 2, 2, 1),
    depthwise=False,
    identity=True,
    ese=True)


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP threads
    spinning against other processes cost far more than they gain on these
    tiny inputs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def expected_hw(h: int, w: int):
    """Output sizes of stage2..5: stride-2 convs round up, pools round odd
    sizes down."""
    sizes = []
    h, w = -(-h // 2), -(-w // 2)
    h, w = -(-h // 2), -(-w // 2)
    for stage in range(4):
        if stage:
            h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_expected_hw_helper():
    assert expected_hw(64, 64) == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert expected_hw(32, 32) == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert expected_hw(70, 90) == [(18, 23), (9, 11), (4, 5), (2, 2)]


@pytest.mark.parametrize('name', sorted(SPEC))
def test_arch_table_matches_spec(name):
    arch = VOVNET_ARCHS[name]
    got = (arch.stem_channels, arch.stage_channels, arch.stage_out_channels,
           arch.layers_per_block, arch.blocks_per_stage, arch.depthwise,
           arch.identity, arch.ese)
    assert got == SPEC[name], f'{name}: {got} != spec {SPEC[name]}'


def test_every_variant_is_tested():
    assert set(VOVNET_ARCHS) == set(SPEC) == set(PARAM_COUNTS)


@pytest.mark.parametrize('name', sorted(PARAM_COUNTS))
def test_param_counts(name):
    backbone, with_cls, spec = PARAM_COUNTS[name]
    model = VoVNet(name)
    classifier = nn.Linear(model.arch.stage_out_channels[-1], 1000)
    assert num_params(model) == backbone, f'{name}: {num_params(model)}'
    total = num_params(model) + num_params(classifier)
    assert total == with_cls
    if spec is not None:
        two_decimals = Decimal(str(round(total / 1e6, 2)))
        assert two_decimals.quantize(Decimal('0.1'),
                                     ROUND_HALF_UP) == Decimal(spec)
        assert abs(total / 1e6 - float(spec)) < 0.06


@pytest.mark.parametrize('name', sorted(SPEC))
def test_forward_backward(name):
    """Train-mode forward of all four stages; gradients reach every parameter
    and are finite."""
    model = VoVNet(name, out_indices=(0, 1, 2, 3)).train()
    outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [
        (2, c, h, w) for c, (h, w) in zip(SPEC[name][2], expected_hw(32, 32))
    ]
    sum(o.mean() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f'parameters without gradient: {no_grad}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize('name', sorted(SPEC))
def test_forward_shapes_and_strides(name):
    """Channels and strides 4/8/16/32, also for a non-multiple of 32."""
    model = VoVNet(name, out_indices=(0, 1, 2, 3)).eval()
    stage_out = SPEC[name][2]
    assert model.out_channels == list(stage_out)
    assert model.out_strides == [4, 8, 16, 32]
    for h, w in ((64, 64), (70, 90)):
        with torch.no_grad():
            outs = model(torch.randn(1, 3, h, w))
        assert [tuple(o.shape) for o in outs] == [
            (1, c, oh, ow) for c, (oh, ow) in zip(stage_out, expected_hw(h, w))
        ]


def test_default_out_indices_are_stage3_to_5():
    model = VoVNet('V-19-slim-dw').eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert model.out_indices == (1, 2, 3)
    assert model.out_channels == [256, 384, 512]
    assert model.out_strides == [8, 16, 32]
    assert [o.shape[1] for o in outs] == [256, 384, 512]
    assert [64 // o.shape[-1] for o in outs] == [8, 16, 32]


def test_registered_and_aliases():
    model = MODELS.build(dict(type='VoVNet', arch='V-39-eSE'))
    assert model.arch == VOVNET_ARCHS['V-39']
    for alias in ('V-19-slim-dw-eSE', 'V-19-dw-eSE', 'V-19-slim-eSE',
                  'V-19-eSE', 'V-57-eSE', 'V-99-eSE'):
        assert VoVNet(alias).arch == VOVNET_ARCHS[alias[:-4]]


def test_unknown_arch_lists_valid_names():
    with pytest.raises(KeyError) as err:
        VoVNet('V-42')
    for name in ('V-42', 'V-19-slim-dw', 'V-99', 'V1-27-slim', 'V-39-eSE'):
        assert name in str(err.value)


def test_arch_dict():
    arch = TINY_ARCH
    model = VoVNet(arch, out_indices=(0, 1, 2, 3)).eval()
    outs = model(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 32, 48, 64]
    assert model.stage3.blocks[1].identity
    with pytest.raises(ValueError, match='Unknown VoVNet arch keys'):
        VoVNet(dict(arch, stem_chs=(1, 2, 3)))
    with pytest.raises(ValueError, match='Incomplete'):
        VoVNet({k: v for k, v in arch.items() if k != 'stage_channels'})
    with pytest.raises(ValueError, match='blocks_per_stage'):
        VoVNet(dict(arch, blocks_per_stage=(1, 1, 1)))


def test_v2_structure_identity_and_ese_everywhere():
    model = VoVNet('V-39')
    for name in model.stage_names:
        blocks = getattr(model, name).blocks
        assert [b.identity for b in blocks] == [False] + [True] * (
            len(blocks) - 1)
        assert all(b.ese is not None for b in blocks)
    assert model.stage2.pool is None
    for name in ('stage3', 'stage4', 'stage5'):
        pool = getattr(model, name).pool
        assert isinstance(pool, nn.MaxPool2d) and pool.ceil_mode
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 0)
    assert model.stage4.blocks[0].concat.conv.in_channels == 512 + 5 * 192
    assert model.stage4.blocks[1].concat.conv.in_channels == 768 + 5 * 192
    ese = model.stage5.blocks[1].ese
    assert ese.fc.bias is not None and ese.fc.in_channels == 1024


def test_v1_structure():
    model = VoVNet('V1-39')
    blocks = [b for n in model.stage_names for b in getattr(model, n).blocks]
    assert not any(b.identity for b in blocks)
    assert all(b.ese is None for b in blocks)
    assert not any('ese' in k for k in model.state_dict())


def test_identity_and_ese_overrides():
    model = VoVNet('V1-39', identity=True, ese=True)
    assert model.stage4.blocks[1].identity and model.stage4.blocks[0].ese
    model = VoVNet('V-39', identity=False, ese=False)
    assert not model.stage4.blocks[1].identity
    assert model.stage4.blocks[1].ese is None


def test_ese_last_only_timm_layout():
    model = VoVNet('V-57', ese_last_only=True)
    for name, num in zip(model.stage_names, (1, 1, 4, 3)):
        blocks = getattr(model, name).blocks
        assert [b.ese is not None
                for b in blocks] == [False] * (num - 1) + [True]


def test_ese_is_hard_sigmoid_gate():
    """eSE = x * ReLU6(fc(avgpool(x)) + 3) / 6, no channel reduction."""
    block = VoVNet('V-19-slim').stage2.blocks[0]
    x = torch.randn(2, 112, 5, 7)
    fc = block.ese.fc
    expected = x * F.relu6(fc(x.mean((2, 3), keepdim=True)) + 3) / 6
    assert torch.allclose(block.ese(x), expected, atol=1e-6)
    assert fc.weight.shape == (112, 112, 1, 1)


def test_depthwise_units():
    model = VoVNet('V-19-dw')
    stem2 = model.stem[2]
    assert stem2.dw_conv.groups == 64 and stem2.dw_conv.stride == (2, 2)
    assert stem2.pw_conv.kernel_size == (1, 1)
    assert model.stem[0].conv.stride == (2, 2)  # stem conv 1: regular conv
    block = model.stage2.blocks[0]
    assert block.reduction.conv.in_channels == 64
    assert block.reduction.conv.out_channels == 128
    assert block.layers[0].dw_conv.groups == 128
    # concat uses the un-reduced input: 64 + 3 * 128
    assert block.concat.conv.in_channels == 448
    slim = VoVNet('V-19-slim-dw').stage2.blocks[0]
    assert slim.reduction is None  # 64 in == 64 stage channels


def test_dcn_placement_authors_config():
    """DCNv2 in every 3x3 layer of the OSA modules of stages 3-5; not in the
    stem, not in 1x1 convs; offsets start at zero."""
    model = VoVNet('V-39', dcn=DCN, stage_with_dcn=AUTHOR_DCN_STAGES)
    model.init_weights()
    for stage, with_dcn in zip(model.stage_names, AUTHOR_DCN_STAGES):
        for block in getattr(model, stage).blocks:
            for layer in block.layers:
                assert isinstance(layer.conv,
                                  ModulatedDeformConv2dPack) == with_dcn
                if with_dcn:
                    assert layer.conv.conv_offset.out_channels == 27
                    assert not layer.conv.conv_offset.weight.any()
                    assert not layer.conv.conv_offset.bias.any()
            assert type(block.concat.conv) is nn.Conv2d
    assert all(type(unit.conv) is nn.Conv2d for unit in model.stem)


def test_dcn_forward_backward():
    model = VoVNet(
        'V-19-slim',
        dcn=DCN,
        stage_with_dcn=(True, ) * 4,
        out_indices=(0, 1, 2, 3))
    model.train()
    outs = model(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [
        (2, c, h, w)
        for c, (h, w) in zip(SPEC['V-19-slim'][2], expected_hw(32, 32))
    ]
    sum(o.mean() for o in outs).backward()
    for block in (model.stage2.blocks[0], model.stage5.blocks[0]):
        offset = block.layers[0].conv.conv_offset
        assert offset.weight.grad is not None
        assert offset.weight.grad.abs().sum() > 0


def test_dcn_argument_errors():
    with pytest.raises(ValueError, match='depthwise'):
        VoVNet('V-19-slim-dw', dcn=DCN, stage_with_dcn=AUTHOR_DCN_STAGES)
    with pytest.raises(ValueError, match='selects no stage'):
        VoVNet('V-39', dcn=DCN)
    with pytest.raises(ValueError, match='dcn is None'):
        VoVNet('V-39', stage_with_dcn=AUTHOR_DCN_STAGES)
    with pytest.raises(ValueError, match='4 flags'):
        VoVNet('V-39', dcn=DCN, stage_with_dcn=(True, True))


def test_bn_eps_matches_frozen_bn():
    model = VoVNet('V-19-dw')
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(m.eps == 1e-5 for m in norms)


def test_frozen_bn_the_mmdet_way():
    model = VoVNet(
        'V-19-slim',
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True)
    model.train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(not m.training for m in norms)
    assert all(not p.requires_grad for m in norms for p in m.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(torch.randn(2, 3, 64, 64))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.requires_grad for m in convs)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages(frozen_stages):
    model = VoVNet(
        'V-19-slim-dw', frozen_stages=frozen_stages, out_indices=(0, 1, 2, 3))
    model.train()
    parts = [model.stem] + [getattr(model, n) for n in model.stage_names]
    frozen, trainable = parts[:frozen_stages + 1], parts[frozen_stages + 1:]
    for part in frozen:
        assert all(not p.requires_grad for p in part.parameters())
        assert all(not m.training for m in part.modules())
    for part in trainable:
        assert all(p.requires_grad for p in part.parameters())
        assert all(m.training for m in part.modules())
    outs = model(torch.randn(2, 3, 64, 64))
    if frozen_stages < 4:
        sum(o.mean() for o in outs).backward()
        for part in frozen:
            assert all(p.grad is None for p in part.parameters())
        for part in trainable:
            assert all(p.grad is not None for p in part.parameters())


def test_with_cp_same_outputs_and_gradients():
    plain = VoVNet(TINY_ARCH, out_indices=(0, 1, 2, 3))
    ckpt = VoVNet(TINY_ARCH, out_indices=(0, 1, 2, 3), with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.stage4.blocks[1].with_cp and ckpt.stage4.blocks[1].identity
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        model.train()
        outs = model(x)
        sum((o * o).mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], {
            n: p.grad.clone()
            for n, p in model.named_parameters()
        }))
    (outs_a, grads_a), (outs_b, grads_b) = results
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outs_a, outs_b))
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(
            grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6), name


def test_group_norm():
    gn = dict(type='GN', num_groups=32, requires_grad=True)
    model = VoVNet('V-39', norm_cfg=gn).eval()
    assert isinstance(model.stage5.blocks[1].concat.norm, nn.GroupNorm)
    assert [o.shape[1]
            for o in model(torch.randn(1, 3, 64, 64))] == [512, 768, 1024]
    with pytest.raises(ValueError) as err:
        VoVNet('V-19-slim', norm_cfg=gn)
    message = str(err.value)
    assert "'stage2.blocks.0.concat'" in message and '112 channels' in message
    with pytest.raises(ValueError, match='num_groups'):
        VoVNet('V-39', norm_cfg=dict(type='GN'))


def test_sync_bn_builds():
    model = VoVNet('V-19-slim-dw', norm_cfg=dict(type='SyncBN')).eval()
    assert isinstance(model.stem[0].norm, nn.SyncBatchNorm)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [256, 384, 512]


def test_default_init():
    model = VoVNet('V-19-slim')
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.weight.data.fill_(3.)
    model.init_weights()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all((m.weight == 1).all() and (m.bias == 0).all() for m in norms)
    conv = model.stage3.blocks[0].layers[0].conv
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out)**0.5) < 0.01


@pytest.mark.parametrize('kwargs, match',
                         [(dict(out_indices=(4, )), 'out_indices'),
                          (dict(out_indices=()), 'out_indices'),
                          (dict(out_indices=(2, 1)), 'out_indices'),
                          (dict(frozen_stages=5), 'frozen_stages'),
                          (dict(frozen_stages=-2), 'frozen_stages')])
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VoVNet('V-19-slim-dw', **kwargs)
