"""VoVNet weight converters (centermask2, maskrcnn-benchmark, timm) and the
``tools/model_converters/vovnet2mmdet.py`` CLI.

The source checkpoints are produced by an independent reference forward pass
written here from the reference spec (sections 1.1, 9.1, 9.2) and timm's layer
names: every tensor it reads is created (random) under the source's own key
name. Converting those tensors and loading them strictly into ``VoVNet`` must
give the reference forward's outputs.
"""
import importlib.util
import pickle
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from golden_utils import golden_state_dict, load_npz, requires_golden
from mmcv.ops import modulated_deform_conv2d
from torch import Tensor

from mmcentermask.converters import (
    convert_centermask2_vovnet as convert_c2_vovnet,
    convert_maskrcnn_benchmark_vovnet as convert_mb_vovnet,
    convert_timm_vovnet, convert_vovnet_state_dict, detect_vovnet_format,
    fold_frozen_bn_eps, load_source_state_dict)
from mmcentermask.converters.key_tables.vovnet import (
    centermask2_vovnet_key_to_mmdet, maskrcnn_benchmark_vovnet_key_to_mmdet, timm_vovnet_key_to_mmdet)
from mmcentermask.models import VoVNet

REPO_ROOT = Path(__file__).resolve().parents[2]
NO_DCN = (False, ) * 4
AUTHOR_DCN = (False, True, True, True)

# Hand copy of the spec's variant table for the variants used here:
# (stem, 3x3 channels, output channels, layers, blocks, depthwise, identity,
# eSE).
ARCHS = {
    'V-19-slim-dw': ((64, 64, 64), (64, 80, 96, 112), (112, 256, 384, 512), 3,
                     (1, 1, 1, 1), True, True, True),
    'V-19-dw': ((64, 64, 64), (128, 160, 192, 224), (256, 512, 768, 1024), 3,
                (1, 1, 1, 1), True, True, True),
    'V-19-slim': ((64, 64, 128), (64, 80, 96, 112), (112, 256, 384, 512), 3,
                  (1, 1, 1, 1), False, True, True),
    'V-39': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
             (1, 1, 2, 2), False, True, True),
    'V1-39': ((64, 64, 128), (128, 160, 192, 224), (256, 512, 768, 1024), 5,
              (1, 1, 2, 2), False, False, False),
}


def c2_split_offset(offset_mask: Tensor) -> Tuple[Tensor, Tensor]:
    """centermask2 ``DFConv3x3``: chunk into (x, y, mask), mask sigmoid."""
    o1, o2, mask = torch.chunk(offset_mask, 3, dim=1)
    return torch.cat((o1, o2), dim=1), mask.sigmoid()


def mb_split_offset(offset_mask: Tensor) -> Tuple[Tensor, Tensor]:
    """maskrcnn-benchmark ``DFConv2d``: first 18 offsets, last 9 mask."""
    return offset_mask[:, :18], offset_mask[:, -9:].sigmoid()


@dataclass(frozen=True)
class Layout:
    """Key names of one source. Templates take ``k`` (stem conv 1..3), ``j``
    (0..2), ``S`` (stage 2..5), ``s`` (0..3), ``B`` (block 1..N), ``b``
    (0..N-1) and ``i`` (layer 0..L-1)."""
    stem: str
    layer: str
    reduction: str
    concat: str
    ese: str
    units: Dict[str, str]
    norm_buffers: Tuple[str, ...]
    eps: float
    ese_last_only: bool
    classifier: Tuple[str, ...]
    split_offset: Optional[Callable[[Tensor], Tuple[Tensor, Tensor]]] = None


FROZEN_BN = ('weight', 'bias', 'running_mean', 'running_var')
C2 = Layout(
    stem='stem.stem_{k}/',
    layer='stage{S}.OSA{S}_{B}.layers.{i}.OSA{S}_{B}_{i}/',
    reduction='stage{S}.OSA{S}_{B}.conv_reduction.OSA{S}_{B}_reduction_0/',
    concat='stage{S}.OSA{S}_{B}.concat.OSA{S}_{B}_concat/',
    ese='stage{S}.OSA{S}_{B}.ese.fc.',
    units=dict(
        conv='conv.',
        norm='norm.',
        dw='dw_conv3x3.',
        pw='pw_conv1x1.',
        pw_norm='pw_norm.',
        offset='conv_offset.',
        dcn_conv='conv.'),
    norm_buffers=FROZEN_BN,
    eps=1e-5,
    ese_last_only=False,
    classifier=('fc.weight', 'fc.bias'),
    split_offset=c2_split_offset)
# maskrcnn-benchmark: C2 names, DFConv2d children, FrozenBN without eps.
MB = replace(
    C2,
    units=dict(C2.units, offset='conv.offset.', dcn_conv='conv.conv.'),
    eps=0.0,
    classifier=(),
    split_offset=mb_split_offset)
TIMM = Layout(
    stem='stem.{j}.',
    layer='stages.{s}.blocks.{b}.conv_mid.{i}.',
    reduction='stages.{s}.blocks.{b}.conv_reduction.',
    concat='stages.{s}.blocks.{b}.conv_concat.',
    ese='stages.{s}.blocks.{b}.attn.fc.',
    units=dict(
        conv='conv.', norm='bn.', dw='conv_dw.', pw='conv_pw.', pw_norm='bn.'),
    norm_buffers=FROZEN_BN + ('num_batches_tracked', ),
    eps=1e-5,
    ese_last_only=True,
    classifier=('head.fc.weight', 'head.fc.bias'))


class Source:
    """Tensors of a source checkpoint, created on first use."""

    def __init__(self, layout: Layout, prefix: str = '', seed: int = 0):
        self.layout = layout
        self.prefix = prefix
        self.tensors: 'OrderedDict[str, Tensor]' = OrderedDict()
        self.gen = torch.Generator().manual_seed(seed)

    def get(self, key: str, shape: Sequence[int], kind: str) -> Tensor:
        key = self.prefix + key
        if key not in self.tensors:
            self.tensors[key] = self._make(tuple(shape), kind)
        assert tuple(self.tensors[key].shape) == tuple(shape), key
        return self.tensors[key]

    def _make(self, shape: Tuple[int, ...], kind: str) -> Tensor:
        if kind == 'count':
            return torch.tensor(7)
        noise = torch.randn(shape, generator=self.gen)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        if kind == 'conv':
            return noise * (2 / fan_in)**0.5
        if kind in ('offset', 'ese'):
            return noise * 0.5 / fan_in**0.5
        if kind == 'gamma':
            return 1 + 0.2 * noise
        if kind == 'var':
            return 0.5 + torch.rand(shape, generator=self.gen)
        return 0.1 * noise  # biases and running means


def _norm(src: Source, name: str, x: Tensor, c: int) -> Tensor:
    layout = src.layout
    gamma = src.get(name + 'weight', (c, ), 'gamma')
    beta = src.get(name + 'bias', (c, ), 'bias')
    mean = src.get(name + 'running_mean', (c, ), 'bias')
    var = src.get(name + 'running_var', (c, ), 'var')
    if 'num_batches_tracked' in layout.norm_buffers:
        src.get(name + 'num_batches_tracked', (), 'count')
    scale = gamma / torch.sqrt(var + layout.eps)
    return x * scale[:, None, None] + (beta - mean * scale)[:, None, None]


def _conv_unit(src: Source, name: str, x: Tensor, cin: int, cout: int, k: int,
               stride: int) -> Tensor:
    units = src.layout.units
    weight = src.get(name + units['conv'] + 'weight', (cout, cin, k, k),
                     'conv')
    x = F.conv2d(x, weight, stride=stride, padding=k // 2)
    return F.relu(_norm(src, name + units['norm'], x, cout))


def _dw_unit(src: Source, name: str, x: Tensor, cin: int, cout: int,
             stride: int) -> Tensor:
    units = src.layout.units
    dw = src.get(name + units['dw'] + 'weight', (cin, 1, 3, 3), 'conv')
    pw = src.get(name + units['pw'] + 'weight', (cout, cin, 1, 1), 'conv')
    x = F.conv2d(F.conv2d(x, dw, stride=stride, padding=1, groups=cin), pw)
    return F.relu(_norm(src, name + units['pw_norm'], x, cout))


def _dcn_unit(src: Source, name: str, x: Tensor, cin: int,
              cout: int) -> Tensor:
    units = src.layout.units
    off_w = src.get(name + units['offset'] + 'weight', (27, cin, 3, 3),
                    'offset')
    off_b = src.get(name + units['offset'] + 'bias', (27, ), 'bias')
    offset, mask = src.layout.split_offset(
        F.conv2d(x, off_w, off_b, padding=1))
    weight = src.get(name + units['dcn_conv'] + 'weight', (cout, cin, 3, 3),
                     'conv')
    x = modulated_deform_conv2d(x, offset, mask, weight, None, 1, 1, 1, 1, 1)
    return F.relu(_norm(src, name + units['norm'], x, cout))


def _osa(src: Source, fmt: dict, x: Tensor, cin: int, arch: tuple, si: int,
         with_dcn: bool, use_ese: bool, use_identity: bool) -> Tensor:
    layout = src.layout
    _, stage_ch, out_ch, layers, _, depthwise, _, _ = arch
    sc, oc = stage_ch[si], out_ch[si]
    feats, h, ch = [x], x, cin
    if depthwise and cin != sc:
        h = _conv_unit(src, layout.reduction.format(**fmt), h, cin, sc, 1, 1)
        ch = sc
    for i in range(layers):
        name = layout.layer.format(i=i, **fmt)
        if depthwise:
            h = _dw_unit(src, name, h, ch, sc, 1)
        elif with_dcn:
            h = _dcn_unit(src, name, h, ch, sc)
        else:
            h = _conv_unit(src, name, h, ch, sc, 3, 1)
        feats.append(h)
        ch = sc
    y = _conv_unit(src, layout.concat.format(**fmt), torch.cat(feats, 1),
                   cin + layers * sc, oc, 1, 1)
    if use_ese:
        name = layout.ese.format(**fmt)
        weight = src.get(name + 'weight', (oc, oc, 1, 1), 'ese')
        bias = src.get(name + 'bias', (oc, ), 'bias')
        gate = F.conv2d(y.mean((2, 3), keepdim=True), weight, bias)
        y = y * F.relu6(gate + 3) / 6
    return y + x if use_identity else y


def reference_forward(src: Source,
                      arch: tuple,
                      x: Tensor,
                      dcn_stages: Sequence[bool] = NO_DCN) -> List[Tensor]:
    """The spec's VoVNet on source-layout tensors; returns stage2..5."""
    layout = src.layout
    stem, _, out_ch, _, blocks, depthwise, identity, ese = arch
    x = _conv_unit(src, layout.stem.format(k=1, j=0), x, 3, stem[0], 3, 2)
    for k, (cin, cout, stride) in ((2, (stem[0], stem[1], 1)),
                                   (3, (stem[1], stem[2], 2))):
        name = layout.stem.format(k=k, j=k - 1)
        if depthwise:
            x = _dw_unit(src, name, x, cin, cout, stride)
        else:
            x = _conv_unit(src, name, x, cin, cout, 3, stride)
    outs, cin = [], stem[2]
    for si in range(4):
        if si:
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for bi in range(blocks[si]):
            fmt = dict(S=si + 2, s=si, B=bi + 1, b=bi)
            last = bi == blocks[si] - 1
            x = _osa(src, fmt, x, cin if bi == 0 else out_ch[si], arch, si,
                     dcn_stages[si], ese
                     and (last or not layout.ese_last_only), identity
                     and bi > 0)
        cin = out_ch[si]
        outs.append(x)
    return outs


def make_source(layout: Layout,
                arch_name: str,
                prefix: str = '',
                dcn_stages: Sequence[bool] = NO_DCN,
                size: int = 64):
    """Source state dict (with the classifier, if the layout has one), an
    input image and the reference outputs of stage2..5."""
    arch = ARCHS[arch_name]
    src = Source(layout, prefix)
    x = torch.randn(1, 3, size, size, generator=src.gen)
    with torch.no_grad():
        outs = reference_forward(src, arch, x, dcn_stages)
    for key in layout.classifier:
        shape = (1000, arch[2][-1]) if key.endswith('weight') else (1000, )
        src.get(key, shape, 'bias')
    return src.tensors, x, outs


def build_model(arch_name: str,
                dcn_stages: Sequence[bool] = NO_DCN,
                **kwargs) -> VoVNet:
    dcn = dict(
        dcn=dict(type='DCNv2', deform_groups=1),
        stage_with_dcn=dcn_stages) if any(dcn_stages) else {}
    return VoVNet(arch_name, out_indices=(0, 1, 2, 3), **dcn, **kwargs)


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """One intra-op thread (shared 2-core machine, tiny inputs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# (format, layout, arch, key prefix, DCN stages, target kwargs, MB eps fold)
CASES = {
    'c2-v19-slim-dw': ('centermask2', C2, 'V-19-slim-dw', '', NO_DCN, {}, False),
    'c2-v39-prefixed':
    ('centermask2', C2, 'V-39', 'backbone.bottom_up.', NO_DCN, {}, False),
    'c2-v19-slim-dcn': ('centermask2', C2, 'V-19-slim', '', AUTHOR_DCN, {}, False),
    'mb-v39-ddp':
    ('maskrcnn_benchmark', MB, 'V-39', 'module.backbone.body.', NO_DCN, {}, True),
    'mb-v19-slim-dcn':
    ('maskrcnn_benchmark', MB, 'V-19-slim', 'backbone.body.', AUTHOR_DCN, {}, True),
    'timm-ese_vovnet39b': ('timm', TIMM, 'V-39', '', NO_DCN,
                           dict(ese_last_only=True), False),
    'timm-ese_vovnet19b_dw': ('timm', TIMM, 'V-19-dw', '', NO_DCN,
                              dict(ese_last_only=True), False),
    'timm-vovnet39a': ('timm', TIMM, 'V1-39', '', NO_DCN, {}, False),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_convert_load_strict_and_forward(case):
    fmt, layout, arch, prefix, dcn_stages, kwargs, fold = CASES[case]
    source, x, expected = make_source(layout, arch, prefix, dcn_stages)
    assert detect_vovnet_format(list(source)) == fmt
    model = build_model(arch, dcn_stages, **kwargs).eval()
    result = convert_vovnet_state_dict(
        source, 'auto', reference=model.state_dict(), fold_eps=fold)
    assert result.source_format == fmt
    assert [k for k, _ in result.dropped] == [
        prefix + k for k in layout.classifier
    ]
    assert result.num_converted == len(source) - len(layout.classifier)
    model.load_state_dict(result.state_dict, strict=True)
    with torch.no_grad():
        outs = model(x)
    for stage, (out, ref) in enumerate(zip(outs, expected), start=2):
        assert out.shape == ref.shape
        err = (out - ref).abs().max().item()
        assert err <= 1e-4 * max(1.0, ref.abs().max().item()), (stage, err)


def test_per_format_functions_equal_dispatcher():
    source, _, _ = make_source(C2, 'V-19-slim-dw')
    a = convert_c2_vovnet(source).state_dict
    b = convert_mb_vovnet(source).state_dict
    c = convert_vovnet_state_dict(source, 'centermask2').state_dict
    assert list(a) == list(b) == list(c)
    timm_source, _, _ = make_source(TIMM, 'V-19-slim-dw')
    assert list(convert_timm_vovnet(timm_source).state_dict) == list(
        convert_vovnet_state_dict(timm_source).state_dict)


C2_KEY, MB_KEY, TIMM_KEY = (centermask2_vovnet_key_to_mmdet, maskrcnn_benchmark_vovnet_key_to_mmdet,
                            timm_vovnet_key_to_mmdet)
KEY_TABLE = [
    (C2_KEY, 'stem.stem_1/conv.weight', 'stem.0.conv.weight'),
    (C2_KEY, 'stem.stem_3/norm.running_var', 'stem.2.norm.running_var'),
    (C2_KEY, 'stem.stem_2/dw_conv3x3.weight', 'stem.1.dw_conv.weight'),
    (C2_KEY, 'stem.stem_2/pw_norm.bias', 'stem.1.norm.bias'),
    (C2_KEY, 'stage4.OSA4_2.layers.3.OSA4_2_3/norm.bias',
     'stage4.blocks.1.layers.3.norm.bias'),
    (C2_KEY, 'stage3.OSA3_1.layers.0.OSA3_1_0/conv_offset.bias',
     'stage3.blocks.0.layers.0.conv.conv_offset.bias'),
    (C2_KEY, 'stage5.OSA5_1.conv_reduction.OSA5_1_reduction_0/conv.weight',
     'stage5.blocks.0.reduction.conv.weight'),
    (C2_KEY, 'stage2.OSA2_1.layers.2.OSA2_1_2/pw_conv1x1.weight',
     'stage2.blocks.0.layers.2.pw_conv.weight'),
    (C2_KEY, 'stage5.OSA5_3.concat.OSA5_3_concat/norm.running_mean',
     'stage5.blocks.2.concat.norm.running_mean'),
    (C2_KEY, 'stage4.OSA4_9.ese.fc.weight', 'stage4.blocks.8.ese.fc.weight'),
    (MB_KEY, 'stage3.OSA3_1.layers.4.OSA3_1_4/conv.offset.weight',
     'stage3.blocks.0.layers.4.conv.conv_offset.weight'),
    (MB_KEY, 'stage3.OSA3_1.layers.4.OSA3_1_4/conv.conv.weight',
     'stage3.blocks.0.layers.4.conv.weight'),
    (MB_KEY, 'stage2.OSA2_1.layers.0.OSA2_1_0/conv.weight',
     'stage2.blocks.0.layers.0.conv.weight'),
    (TIMM_KEY, 'stem.1.conv_dw.weight', 'stem.1.dw_conv.weight'),
    (TIMM_KEY, 'stem.0.bn.num_batches_tracked',
     'stem.0.norm.num_batches_tracked'),
    (TIMM_KEY, 'stages.2.blocks.1.conv_mid.4.bn.weight',
     'stage4.blocks.1.layers.4.norm.weight'),
    (TIMM_KEY, 'stages.0.blocks.0.conv_reduction.conv.weight',
     'stage2.blocks.0.reduction.conv.weight'),
    (TIMM_KEY, 'stages.3.blocks.2.conv_concat.bn.bias',
     'stage5.blocks.2.concat.norm.bias'),
    (TIMM_KEY, 'stages.3.blocks.2.attn.fc.bias',
     'stage5.blocks.2.ese.fc.bias'),
]


@pytest.mark.parametrize('mapper, key, expected', KEY_TABLE)
def test_key_table(mapper, key, expected):
    assert mapper(key) == expected


@pytest.mark.parametrize('mapper, key', [
    (C2_KEY, 'stem.stem_1/conv.bias'),
    (C2_KEY, 'stem.stem_4/conv.weight'),
    (C2_KEY, 'stage3.OSA4_1.layers.0.OSA4_1_0/conv.weight'),
    (C2_KEY, 'stage3.OSA3_0.ese.fc.weight'),
    (C2_KEY, 'stage3.OSA3_1.layers.0.OSA3_1_1/conv.weight'),
    (C2_KEY, 'stage3.OSA3_1.layers.0.OSA3_1_0/conv.offset.bias'),
    (C2_KEY, 'fpn_lateral3.weight'),
    (MB_KEY, 'stage3.OSA3_1.layers.0.OSA3_1_0/conv.conv.bias'),
    (TIMM_KEY, 'stages.4.blocks.0.conv_concat.conv.weight'),
    (TIMM_KEY, 'stem.0.conv.bias'),
])
def test_unknown_single_keys(mapper, key):
    with pytest.raises(KeyError):
        mapper(key)


def test_unknown_keys_stop_conversion_and_are_listed():
    source, _, _ = make_source(C2, 'V-19-slim-dw')
    source['stage2.OSA2_1.bogus.weight'] = torch.zeros(1)
    source['backbone.fpn_lateral3.weight'] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        convert_c2_vovnet(source)
    assert 'stage2.OSA2_1.bogus.weight' in str(err.value)
    assert 'backbone.fpn_lateral3.weight' in str(err.value)
    assert '2 keys' in str(err.value)


def test_missing_and_mismatched_keys_stop_conversion():
    source, _, _ = make_source(C2, 'V-19-slim-dw')
    del source['stage3.OSA3_1.ese.fc.bias']
    reference = VoVNet('V-19-slim-dw').state_dict()
    with pytest.raises(ValueError) as err:
        convert_c2_vovnet(source, reference=reference)
    assert 'missing' in str(err.value)
    assert 'stage3.blocks.0.ese.fc.bias' in str(err.value)

    source, _, _ = make_source(C2, 'V-19-slim-dw')
    with pytest.raises(ValueError, match='shape mismatches'):
        convert_c2_vovnet(source, reference=VoVNet('V-19-dw').state_dict())


def test_timm_needs_ese_last_only():
    source, _, _ = make_source(TIMM, 'V-39')
    with pytest.raises(ValueError) as err:
        convert_timm_vovnet(source, reference=VoVNet('V-39').state_dict())
    assert 'stage4.blocks.0.ese.fc.weight' in str(err.value)
    model = VoVNet('V-39', ese_last_only=True)
    result = convert_timm_vovnet(source, reference=model.state_dict())
    model.load_state_dict(result.state_dict, strict=True)


def test_two_sources_for_one_target_key():
    source = {
        'stem.stem_2/norm.weight': torch.ones(64),
        'stem.stem_2/pw_norm.weight': torch.ones(64)
    }
    with pytest.raises(ValueError, match='both map to'):
        convert_c2_vovnet(source)


def test_frozen_bn_counters_added():
    source, _, _ = make_source(C2, 'V-19-slim-dw')
    result = convert_c2_vovnet(source)
    num_norms = sum(k.endswith('running_var') for k in source)
    assert len(result.added) == num_norms
    assert all(int(result.state_dict[k]) == 0 for k, _ in result.added)
    timm_source, _, _ = make_source(TIMM, 'V-19-slim-dw')
    result = convert_timm_vovnet(timm_source)
    assert result.added == []
    assert int(result.state_dict['stem.0.norm.num_batches_tracked']) == 7


def test_fold_frozen_bn_eps():
    var = torch.tensor([1.0, 0.25, 1e-5, 5e-6])
    folded, clamped = fold_frozen_bn_eps(var)
    assert clamped == 2
    assert torch.allclose(folded[:2], var[:2] - 1e-5)
    assert (folded > 0).all()
    assert torch.allclose(
        torch.rsqrt(folded[:2] + 1e-5), torch.rsqrt(var[:2]), rtol=1e-6)

    source = {'stem.stem_1/norm.running_var': var}
    result = convert_mb_vovnet(source, fold_eps=True)
    assert result.num_clamped == 2
    assert torch.equal(result.state_dict['stem.0.norm.running_var'], folded)
    with pytest.raises(ValueError, match='maskrcnn_benchmark'):
        convert_vovnet_state_dict(source, 'centermask2', fold_eps=True)
    with pytest.raises(ValueError, match='source_format'):
        convert_vovnet_state_dict(source, 'detectron')


def test_detect_format():
    assert detect_vovnet_format(['stages.0.blocks.0.conv_mid.0.conv.weight'
                                 ]) == 'timm'
    assert detect_vovnet_format(['backbone.body.stem.stem_1/conv.weight'
                                 ]) == 'maskrcnn_benchmark'
    assert detect_vovnet_format(['backbone.bottom_up.stem.stem_1/conv.weight'
                                 ]) == 'centermask2'
    assert detect_vovnet_format(['stem.stem_1/conv.weight']) == 'centermask2'
    with pytest.raises(ValueError, match='Cannot tell'):
        detect_vovnet_format(['layer1.0.conv1.weight'])


def _load_cli():
    path = REPO_ROOT / 'tools' / 'model_converters' / 'vovnet2mmdet.py'
    spec = importlib.util.spec_from_file_location('vovnet2mmdet', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('suffix', ['.pth', '.pkl'])
def test_cli_writes_pretrained_checkpoint(tmp_path, capsys, suffix):
    source, x, expected = make_source(C2, 'V-19-slim-dw',
                                      'backbone.bottom_up.')
    src = tmp_path / f'vovnet19_ese_slim_dw{suffix}'
    if suffix == '.pkl':
        with open(src, 'wb') as f:
            pickle.dump(
                {
                    'model': {
                        k: v.numpy()
                        for k, v in source.items()
                    },
                    '__author__': 'test'
                }, f)
    else:
        torch.save({'model': source, 'iteration': 0}, src)
    dst = tmp_path / 'converted.pth'
    _load_cli().main([str(src), str(dst), '--arch', 'V-19-slim-dw'])
    printed = capsys.readouterr().out
    assert f'Converted {len(source) - 2} tensors' in printed
    assert 'Ignored 2 classifier tensors' in printed

    saved = torch.load(dst, weights_only=False)
    assert saved['meta']['source_format'] == 'centermask2'
    assert saved['meta']['vovnet_kwargs']['arch'] == 'V-19-slim-dw'
    model = VoVNet(
        'V-19-slim-dw',
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    loaded = model.state_dict()
    assert all(
        torch.equal(v, loaded[k]) for k, v in saved['state_dict'].items())
    with torch.no_grad():
        outs = model.eval()(x)
    # relative to the map's magnitude, as test_convert_load_strict_and_forward
    # (outputs reach ~100; another CPU's kernels differ by ~1e-6 of that)
    for out, ref in zip(outs, expected):
        err = (out - ref).abs().max().item()
        assert err <= 1e-4 * max(1.0, ref.abs().max().item()), err


def test_cli_timm_implies_ese_last_only(tmp_path, capsys):
    source, _, _ = make_source(TIMM, 'V-39')
    src, dst = tmp_path / 'ese_vovnet39b.pth', tmp_path / 'out.pth'
    torch.save(source, src)
    _load_cli().main([str(src), str(dst), '--arch', 'V-39'])
    meta = torch.load(dst, weights_only=False)['meta']
    assert meta['source_format'] == 'timm'
    assert meta['vovnet_kwargs']['ese_last_only'] is True
    assert 'ese_last_only=True' in capsys.readouterr().out


def test_cli_fails_on_wrong_arch(tmp_path):
    source, _, _ = make_source(C2, 'V-19-slim-dw')
    src, dst = tmp_path / 'src.pth', tmp_path / 'out.pth'
    torch.save(source, src)
    with pytest.raises(ValueError, match='do not fit the target'):
        _load_cli().main([str(src), str(dst), '--arch', 'V-19-slim'])
    assert not dst.exists()


def test_load_source_state_dict_rejects_non_tensors(tmp_path):
    path = tmp_path / 'bad.pth'
    torch.save({'stem.stem_1/conv.weight': torch.zeros(1), 'epoch': 3}, path)
    with pytest.raises(ValueError, match='epoch'):
        load_source_state_dict(str(path))


GOLDEN = [('lite_v19_slim_dw', 'V-19-slim-dw'), ('v39', 'V-39')]


@requires_golden
@pytest.mark.parametrize('variant, arch', GOLDEN)
def test_golden_keys_match_reference_generator(variant, arch):
    """The C2 key generator above reproduces centermask2's real backbone
    keys and shapes."""
    golden = golden_state_dict(variant, prefix='backbone.bottom_up.')
    source, _, _ = make_source(C2, arch, 'backbone.bottom_up.')
    for key in C2.classifier:
        del source['backbone.bottom_up.' + key]
    assert {
        k: tuple(v.shape)
        for k, v in golden.items()
    } == {
        k: tuple(v.shape)
        for k, v in source.items()
    }


@requires_golden
@pytest.mark.parametrize('variant, arch', GOLDEN)
def test_golden_backbone_outputs(variant, arch):
    """Converted synthetic centermask2 weights reproduce centermask2's
    stage3-5 outputs on the golden input image."""
    golden = golden_state_dict(variant, prefix='backbone.bottom_up.')
    model = VoVNet(
        arch, norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True).eval()
    result = convert_c2_vovnet(golden, reference=model.state_dict())
    model.load_state_dict(result.state_dict, strict=True)
    names = ('stage3', 'stage4', 'stage5')
    keys = [
        f'backbone_{n}__{part}' for n in names
        for part in ('subset', 'channels')
    ]
    data = load_npz(variant, 'coffee_infer', keys=keys + ['input_tensor'])
    with torch.no_grad():
        outs = model(torch.from_numpy(data['input_tensor'])[None])
    for name, out in zip(names, outs):
        ref = torch.from_numpy(data[f'backbone_{name}__subset'])
        channels = torch.from_numpy(data[f'backbone_{name}__channels']).long()
        got = out[0, channels]
        assert got.shape == ref.shape
        err = (got - ref).abs().max().item()
        assert err < 1e-4 * max(1.0, ref.abs().max().item()), (name, err)
