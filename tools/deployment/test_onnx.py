"""Evaluate an exported CenterMask on the config's test set with ONNX Runtime.

    python tools/deployment/test_onnx.py CONFIG MODEL.onnx [--threads N]
        [--cfg-options k=v ...]

Same data, evaluator and printed COCO table as ``tools/test.py CONFIG
CHECKPOINT``; the network runs in ONNX Runtime
(:class:`mmcentermask.deploy.ONNXRuntimeCenterMask`).
"""
import argparse
import json
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)
import mmcentermask  # noqa: E402,F401


def parse_args() -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('model', help='exported .onnx file')
    parser.add_argument('--threads', type=int, default=None,
                        help='ONNX Runtime intra-op threads')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as tools/test.py')
    return parser.parse_args()


def evaluate(cfg, onnx_file: str, num_threads=None) -> dict:
    """Run the test dataloader through ONNX Runtime and evaluate.

    Args:
        cfg (:obj:`Config`): The model's config (``test_dataloader``,
            ``test_evaluator``).
        onnx_file (str): Exported model.
        num_threads (int, optional): ONNX Runtime intra-op threads.

    Returns:
        dict: The evaluator's metrics (e.g. ``coco/segm_mAP``).
    """
    from mmengine.evaluator import Evaluator
    from mmengine.runner import Runner
    from mmengine.utils import ProgressBar

    from mmcentermask.deploy import ONNXRuntimeCenterMask
    runner = ONNXRuntimeCenterMask(cfg, onnx_file, num_threads=num_threads)
    dataloader = Runner.build_dataloader(cfg.test_dataloader)
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataloader.dataset.metainfo
    progress = ProgressBar(len(dataloader.dataset))
    for data_batch in dataloader:
        evaluator.process(data_samples=runner.predict(data_batch),
                          data_batch=data_batch)
        for _ in data_batch['inputs']:
            progress.update()
    return evaluator.evaluate(len(dataloader.dataset))


def main() -> None:
    args = parse_args()
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    metrics = evaluate(cfg, args.model, args.threads)
    print(json.dumps(metrics))
    if args.out:
        with open(args.out, 'w') as file:
            json.dump(metrics, file)


if __name__ == '__main__':
    main()
