"""``tools/analysis_tools/benchmark_train_step.py``: the same checkout run
twice on the quick-start config (the tiny shapes set standing in for the
bundled one) gives the same losses at every iteration, and every timed
method is called; the per-stage table's ``(rest)`` rows."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools',
                'benchmark_train_step.py')
SHAPES_CONFIG = ('configs/centermask/'
                 'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_'
                 'shapes.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_train_step', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_runs_of_one_checkout_give_the_same_losses(tiny_coco, tmp_path):
    # the config reads data/shapes relative to the working directory
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'shapes').symlink_to(tiny_coco)
    proc = subprocess.run([
        sys.executable, TOOL, SHAPES_CONFIG, '--repo', REPO_ROOT, REPO_ROOT,
        '--iters', '1', '--warmup', '1'
    ],
                          cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS='1'),
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    differences = re.search(
        r'largest relative loss difference per iteration: (.*)',
        proc.stdout).group(1).split()
    assert [float(d) for d in differences] == [0., 0.], proc.stdout
    # every timed method ran at least once
    assert 'never called' not in proc.stdout, proc.stdout


def test_stage_table_rest_rows():
    tool = load_tool()
    times = {stage: 0.01 for stage, *_ in tool.STAGES}
    times.update({
        'load batch': 0.5,
        'train step': 1.0,
        'forward + losses': 0.4,
        'backward': 0.3,
        'clip + optimizer step': 0.1
    })
    run = dict(iterations=[times, times])
    lines = tool.stage_table([run, run])
    # train step: 1.0 - (preprocessor 0.01 + forward 0.4 + backward 0.3
    # + step 0.1)
    rest = [float(line.split()[-1]) for line in lines if '(rest)' in line]
    assert rest[-1] == 0.19
    assert lines[0].split()[-1] == '0.500'


def test_stage_table_leaves_out_absent_stages():
    tool = load_tool()
    absent = ['FCOS head forward', 'MaskIoU head forward']
    times = {stage: 0.01 for stage, *_ in tool.STAGES if stage not in absent}
    times.update({'load batch': 0.5, 'train step': 1.0})
    lines = tool.stage_table([dict(iterations=[times], absent=absent)])
    names = [line.strip().rsplit(' ', 1)[0].strip() for line in lines]
    assert not set(absent) & set(names)
    assert 'mask head forward' in names
    # the RoI head's rest: 0.01 - its 5 present children x 0.01
    rois = names.index('RoI head (assign to losses)')
    rest = lines[names.index('(rest)', rois)].split()[-1]
    assert float(rest) == -0.04
