"""MMDetection's `tools/test.py` with mmcentermask loaded (same arguments)."""
from _mmdet_tool import run_mmdet_tool

if __name__ == '__main__':
    run_mmdet_tool('test.py')
