"""A hook appending every iteration's raw losses to a file (resume tests).

Loaded by the test configs through ``custom_imports``; each line is
``iter<TAB>name=float.hex ...<TAB>end`` so a line torn by a kill is recognised.
"""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class RawLossLogHook(Hook):
    priority = 'HIGHEST'

    def __init__(self, path):
        self.path = path

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        values = ' '.join(f'{k}={float(v).hex()}'
                          for k, v in sorted(outputs.items()))
        with open(self.path, 'a') as f:
            f.write(f'{runner.iter + 1}\t{values}\tend\n')


def read(path):
    """{iteration: [line values, ...]} of complete lines."""
    out = {}
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        parts = line.split('\t')
        if len(parts) == 3 and parts[2] == 'end':
            out.setdefault(int(parts[0]), []).append(parts[1])
    return out
