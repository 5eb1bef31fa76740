"""The command line shared by the full-model converters
(``tools/model_converters/centermask2_to_mmdet.py`` and
``maskrcnn_benchmark_to_mmdet.py``)."""
import argparse
import sys
from typing import Callable, List, Optional

from .checkpoint_io import load_source_state_dict, save_mmengine_checkpoint
from .engine import Conversion, ConversionError

Converter = Callable[..., Conversion]


def convert_checkpoint_file(src: str, dst: str, config,
                            converter: Converter) -> Conversion:
    """Load ``src``, convert it for ``config`` and save the MMEngine
    checkpoint ``dst``. Nothing is written when the conversion fails."""
    result = converter(load_source_state_dict(src), config)
    save_mmengine_checkpoint(result, dst, config, src=src)
    return result


def run_conversion(src: str,
                   dst: str,
                   config,
                   converter: Converter) -> int:
    """Command-line conversion: load ``src``, convert it for ``config``,
    save ``dst``, printing progress and a summary.

    Returns:
        int: exit status, 0 on success, 1 when the conversion failed (the
        error, with the lists of keys, is printed and nothing is written).
    """
    print(f'Loading {src}')
    try:
        source = load_source_state_dict(src)
    except (ConversionError, FileNotFoundError) as err:
        print(f'Conversion failed, nothing written:\n{err}', file=sys.stderr)
        return 1
    print(f'{len(source)} tensors; building the model of {config}')
    try:
        result = converter(source, config)
    except ConversionError as err:
        print(f'Conversion failed, nothing written:\n{err}', file=sys.stderr)
        return 1
    print(result.summary())
    save_mmengine_checkpoint(result, dst, config, src=src)
    num_params = sum(v.numel() for k, v in result.state_dict.items()
                     if not k.endswith(('running_mean', 'running_var',
                                        'num_batches_tracked')))
    print(f'Saved {dst}: {len(result.state_dict)} tensors, '
          f'{num_params:,} parameters (without BN statistics)')
    return 0


def main(argv: Optional[List[str]], converter: Converter,
         source_name: str) -> int:
    """``SRC DST --config CONFIG``: convert a ``source_name`` checkpoint.

    Args:
        argv (list[str], optional): Arguments (``sys.argv[1:]`` if None).
        converter (Callable): ``converter(source, config) -> Conversion``.
        source_name (str): Name of the source code base, for the help.

    Returns:
        int: Exit status (see :func:`run_conversion`).
    """
    parser = argparse.ArgumentParser(
        description=f'Convert a {source_name} CenterMask checkpoint to an '
        'MMEngine checkpoint of mmcentermask.')
    parser.add_argument('src', help=f'{source_name} checkpoint (.pth or .pkl)')
    parser.add_argument('dst', help='output MMEngine checkpoint (.pth)')
    parser.add_argument(
        '--config', required=True, help='mmcentermask config of the model')
    args = parser.parse_args(argv)
    return run_conversion(args.src, args.dst, args.config, converter)
