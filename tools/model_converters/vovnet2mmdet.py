"""Convert VoVNet backbone weights to mmcentermask's ``VoVNet`` keys.

Sources: centermask2 / vovnet-detectron2 (``centermask2``; ``.pth`` or
``.pkl``, bare or ``backbone.bottom_up.`` keys), maskrcnn-benchmark
CenterMask (``maskrcnn_benchmark``) and timm ``ese_vovnet*`` / ``vovnet*a``
(``timm``). The key table is in :mod:`mmcentermask.converters.key_tables.vovnet`.

Example::

    python tools/model_converters/vovnet2mmdet.py \\
        vovnet39_ese_detectron2.pth vovnet-v2-39_c2.pth --arch V-39

    # then, in a config:
    # backbone=dict(type='VoVNet', arch='V-39',
    #               init_cfg=dict(type='Pretrained',
    #                             checkpoint='vovnet-v2-39_c2.pth'))

Only convert files you trust: ``.pth`` files are unpickled with
``weights_only=False``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from mmcentermask.converters import (  # noqa: E402
    convert_vovnet_state_dict, detect_vovnet_format, load_source_state_dict)
from mmcentermask.models.backbones.vovnet import VoVNet  # noqa: E402

NORM_CFGS = {
    'BN': dict(type='BN', requires_grad=True),
    'GN': dict(type='GN', num_groups=32, requires_grad=True),
}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert VoVNet weights (centermask2, '
        'maskrcnn-benchmark CenterMask, timm) to mmcentermask VoVNet keys.')
    parser.add_argument('src', help='source checkpoint (.pth or .pkl)')
    parser.add_argument('dst', help='output .pth for init_cfg=Pretrained')
    parser.add_argument(
        '--arch', required=True, help='VoVNet arch, e.g. V-39 or V-19-slim-dw')
    parser.add_argument(
        '--src-format',
        default='auto',
        choices=['auto', 'centermask2', 'maskrcnn_benchmark', 'timm'],
        help='source key layout (default: detect)')
    parser.add_argument(
        '--fold-frozen-bn-eps',
        action='store_true',
        help='maskrcnn_benchmark only: store running_var - 1e-5 (clamped > 0) so that the '
        'BN (eps 1e-5) reproduces the eps-free maskrcnn-benchmark FrozenBN')
    parser.add_argument(
        '--ese-last-only',
        action='store_true',
        help='target has eSE only in the last block of a stage (implied for '
        'timm sources)')
    parser.add_argument(
        '--dcn',
        action='store_true',
        help='target has DCNv2 in stages 3-5 (the authors\' DCN models)')
    parser.add_argument(
        '--norm',
        default='BN',
        choices=sorted(NORM_CFGS),
        help='norm type of the source model (FrozenBN / BN -> BN)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    print(f'Loading {args.src}')
    source = load_source_state_dict(args.src)
    src_format = args.src_format
    if src_format == 'auto':
        src_format = detect_vovnet_format(list(source))
    print(f'{len(source)} tensors, layout {src_format!r}')

    model_kwargs = dict(
        arch=args.arch,
        ese_last_only=args.ese_last_only or src_format == 'timm',
        norm_cfg=NORM_CFGS[args.norm])
    if args.dcn:
        model_kwargs.update(
            dcn=dict(type='DCNv2', deform_groups=1),
            stage_with_dcn=(False, True, True, True))
    model = VoVNet(**model_kwargs)
    result = convert_vovnet_state_dict(
        source,
        src_format,
        reference=model.state_dict(),
        fold_eps=args.fold_frozen_bn_eps)
    model.load_state_dict(result.state_dict, strict=True)

    num_values = sum(t.numel() for t in result.state_dict.values())
    num_params = sum(p.numel() for p in model.parameters())
    print(f'Converted {result.num_converted} tensors '
          f'({num_values:,} values; {num_params:,} parameters in '
          f'VoVNet({args.arch!r})); loads with strict=True')
    print(f'Ignored {len(result.dropped)} classifier tensors: '
          f'{[key for key, _ in result.dropped]}')
    print(f'Added {len(result.added)} num_batches_tracked buffers (= 0)')
    if args.fold_frozen_bn_eps:
        print(f'Folded FrozenBN eps; clamped {result.num_clamped} running '
              'variances <= 1e-5')

    meta = dict(
        source=osp.abspath(args.src),
        source_format=src_format,
        fold_frozen_bn_eps=args.fold_frozen_bn_eps,
        vovnet_kwargs={
            k: v
            for k, v in model_kwargs.items() if k != 'norm_cfg'
        },
        norm=args.norm)
    torch.save({'state_dict': result.state_dict, 'meta': meta}, args.dst)
    init_kwargs = ', '.join(f'{k}={v!r}'
                            for k, v in meta['vovnet_kwargs'].items())
    print(f'Saved {args.dst}; use it as\n  backbone=dict(type=\'VoVNet\', '
          f'{init_kwargs}, init_cfg=dict(type=\'Pretrained\', '
          f'checkpoint={args.dst!r}))')


if __name__ == '__main__':
    main()
