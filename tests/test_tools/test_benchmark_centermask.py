"""tools/analysis_tools/benchmark_centermask.py: the command lines of
gpu_check.sh parse, the defaults follow the device, and the side-by-side
table shows the controlled counts, the stages and the ratios (the
measurements themselves: tests/test_utils/test_benchmark.py)."""
import importlib.util
import re
import sys

import pytest
from repo_paths import REPO_ROOT

TOOL = f'{REPO_ROOT}/tools/analysis_tools/benchmark_centermask.py'
GPU_CHECK = f'{REPO_ROOT}/tools/analysis_tools/gpu_check.sh'


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('benchmark_centermask', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(tool, monkeypatch, *argv):
    monkeypatch.setattr(sys, 'argv', ['benchmark_centermask.py', *argv])
    return tool.parse_args()


def test_gpu_check_command_lines_parse(tool, monkeypatch):
    script = open(GPU_CHECK).read()
    cuda = re.search(r'bench=\((--device cuda[^)]*)\)', script).group(1)
    args = parse(tool, monkeypatch, *cuda.split(), '--scenarios', 'realistic')
    assert (args.device, args.repeat, args.warmup) == ('cuda', 20, 5)
    assert args.scenarios == ['realistic']
    assert '--scenarios worst-case' in script
    cpu = re.search(r'bench=\((--device cpu[^)]*)\)', script).group(1)
    args = parse(tool, monkeypatch, *cpu.split(), '--scenarios', 'worst-case')
    assert (args.size, args.repeat, args.warmup) == ((128, 192), 1, 0)


def test_defaults_follow_the_device(tool, monkeypatch):
    cpu = parse(tool, monkeypatch)
    assert (cpu.repeat, cpu.warmup, cpu.channels_last) == (3, 1, 'cpu')
    assert cpu.scenarios == ['realistic', 'worst-case']
    cuda = parse(tool, monkeypatch, '--device', 'cuda', '--channels-last')
    assert (cuda.repeat, cuda.warmup, cuda.channels_last) == (20, 5, True)


def result(stage_ms, boxes, classes, masks):
    return dict(
        size=(64, 96),
        params_m=10.,
        score_thr=0.,
        max_per_img=masks,
        nms=[
            dict(nms='RPN', boxes=900, groups=(0, 1, 2, 3, 4)),
            dict(nms='FCOS', boxes=boxes, groups=classes),
            dict(nms='box head', boxes=boxes, groups=classes)
        ],
        masks=masks,
        stage_ms=stage_ms,
        cpu_ms=[sum(run) for run in zip(*stage_ms)],
        aten_ops=100,
        syncs=None,
        mem_mb=50.,
        peak_mb=500.)


def test_table_is_side_by_side_with_ratios(tool):
    fast = [[1., 3.], [2., 2.], [1., 1.], [1., 1.], [1., 1.], [1., 1.]]
    slow = [[2., 6.], [4., 4.], [2., 2.], [2., 2.], [2., 2.], [2., 2.]]
    pair = {
        'model': 'm',
        'scenario': 'worst-case',
        'CenterMask': result(fast, 4000, (1, 2), 50),
        'Mask R-CNN': result(slow, 4000, (1, 2), 50)
    }
    rows = {
        line.split(' | ')[2]: line.split(' | ')[3:]
        for line in tool.table([pair], 'cpu').splitlines()[2:]
    }
    assert rows['candidates into the class-aware NMS'] == [
        '4000', '4000', '1.00 |'
    ]
    assert rows['classes among them'] == ['2', '2', '1.00 |']
    assert rows['other NMS input (boxes)'][1] == 'RPN 900 in 5 levels'
    assert rows['final masks'] == ['50', '50', '1.00 |']
    # median of two runs, (min), ratio of the medians
    assert rows['data preprocessing, median (min) ms'] == [
        '2.0 (1.0)', '4.0 (2.0)', '0.50 |'
    ]
    assert rows['total, median (min) ms'][2] == '0.50 |'
    assert 'host syncs after the backbone' not in rows
