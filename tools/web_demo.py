"""Serve a web page that runs a CenterMask model on uploaded images.

    python tools/web_demo.py CONFIG CHECKPOINT [--model CONFIG CHECKPOINT]...
        [--host 127.0.0.1] [--port 7860] [--device cpu] [--score-thr 0.3]

Open the printed address, upload an image, press Run: the page shows the
image with the masks, boxes, class names and scores drawn (by the same
inferencer and visualizer as ``tools/demo.py``), the number of detections per
class, the inference time, and offers the detections as a COCO JSON file
(:func:`mmcentermask.apis.coco_json`). A CHECKPOINT ending in ``.onnx`` is an
exported model run by ONNX Runtime. Every ``--model`` adds a config and
checkpoint to the page's model list; each model is loaded once, the first one
at start-up, the others when first chosen.

Needs the ``demo`` extra (``pip install -e .[demo]``: gradio). The page
serves the machine it runs on: keep ``--host`` at 127.0.0.1 unless the
network is trusted.
"""
import argparse
import json
import logging
import os.path as osp
import sys
import tempfile
import threading
from collections import Counter
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
import mmcentermask  # noqa: E402,F401
from mmdet.apis import DetInferencer  # noqa: E402

from mmcentermask.apis import backend_of, coco_json  # noqa: E402
from mmcentermask.apis import init_inferencer, predict_and_draw  # noqa: E402
from mmcentermask.utils.image_check import unreadable_reason  # noqa: E402

try:
    import gradio as gr
except ImportError as error:  # an optional extra: say how to get it
    sys.exit(f'error: the web demo needs gradio ({error}); install the demo '
             'extra: pip install -e ".[demo]"')

logger = logging.getLogger('web_demo')
#: Style of the page: small images scaled up to the result's height, room
#: for two lines of status (the page does not jump).
CSS = ('#result img {width: 100%; height: 100%; object-fit: contain} '
       '#status {min-height: 3em}')
#: Height of the result on the page in CSS pixels (small images are scaled).
RESULT_HEIGHT = 420


class ModelChoice(NamedTuple):
    """One entry of the page's model list.

    Attributes:
        name (str): What the list shows (config and checkpoint file names).
        config (str): Config file.
        checkpoint (str): PyTorch checkpoint or exported ``.onnx`` file.
    """
    name: str
    config: str
    checkpoint: str


def model_choices(pairs: Sequence[Tuple[str, str]]) -> List[ModelChoice]:
    """Named, checked choices of (config, checkpoint) pairs.

    Raises:
        FileNotFoundError: A config or checkpoint does not exist.
    """
    for config, checkpoint in pairs:
        for what, path in (('config', config), ('checkpoint', checkpoint)):
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'{what} file {path} does not exist; give an existing '
                    f'{what} (positional or after --model)')
    names = [
        f'{osp.basename(config)} | {osp.basename(checkpoint)}'
        for config, checkpoint in pairs
    ]
    if len(set(names)) < len(names):  # same file names in other folders
        names = [f'{config} | {checkpoint}' for config, checkpoint in pairs]
    return [
        ModelChoice(name, osp.abspath(config), osp.abspath(checkpoint))
        for name, (config, checkpoint) in zip(names, pairs)
    ]


class WebDemo:
    """The page's state and its one action (predict, draw, export).

    Models are loaded once per (config, checkpoint) and kept; requests run
    one at a time (the inferencer's visualizer draws on shared state).

    Args:
        choices (list[ModelChoice]): The models the page offers.
        device (str): Where PyTorch models run (ONNX: CPU).
        score_thr (float): The threshold the page starts with.
        out_dir (str): Where the COCO JSON files are written.
    """

    def __init__(self, choices: List[ModelChoice], device: str,
                 score_thr: float, out_dir: str) -> None:
        self.choices = {choice.name: choice for choice in choices}
        self.device = device
        self.score_thr = score_thr
        self.out_dir = out_dir
        self._inferencers: Dict[ModelChoice, DetInferencer] = {}
        self._lock = threading.Lock()

    def inferencer(self, name: str) -> DetInferencer:
        """The loaded inferencer of the model called ``name`` (loaded now
        if it is the first request for it)."""
        choice = self.choices[name]
        if choice not in self._inferencers:
            logger.info('loading %s', name)
            self._inferencers[choice] = init_inferencer(
                choice.config,
                choice.checkpoint,
                device=self.device,
                backend=backend_of(choice.checkpoint))
        return self._inferencers[choice]

    def run(self, name: str, image: Optional[str], score_thr: float):
        """Predict and draw ``image`` with model ``name``.

        Returns:
            tuple: The drawn image ((H, W, 3) uint8 RGB), the status text
            (markdown) and the COCO JSON file; on a problem only the status
            changes (it says what went wrong and how to fix it) and the last
            good result stays on the page.
        """
        if image is None:
            return gr.skip(), ('**No image yet:** upload one, then press '
                               '**Run**.'), gr.skip()
        file_name = osp.basename(image)
        reason = unreadable_reason(image)
        if reason is not None:
            return gr.skip(), (
                f'**{file_name} is not a readable image: {reason}.** '
                'Upload a JPEG, PNG, BMP, TIFF or WebP image.'), gr.skip()
        with self._lock:
            try:
                inferencer = self.inferencer(name)
            except Exception as error:  # noqa: B902 (shown on the page)
                logger.exception('loading %s failed', name)
                return gr.skip(), (
                    f'**Model {name} could not be loaded:** {error}. '
                    'Fix the file or choose another model.'), gr.skip()
            try:
                result = predict_and_draw(inferencer, image, score_thr)
            except Exception as error:  # noqa: B902 (shown on the page)
                logger.exception('inference on %s failed', file_name)
                return gr.skip(), (
                    f'**Inference on {file_name} failed:** {error}'), \
                    gr.skip()
        classes = inferencer.model.dataset_meta['classes']
        document = coco_json(result.sample, classes, file_name, score_thr)
        json_file = self._write_json(document, file_name)
        return result.drawing, self._summary(document, classes, score_thr,
                                             result.seconds, name), json_file

    def _write_json(self, document: dict, file_name: str) -> str:
        """``document`` in a new folder under ``out_dir``, named after the
        image."""
        folder = tempfile.mkdtemp(dir=self.out_dir)
        path = osp.join(folder,
                        f'{osp.splitext(file_name)[0]}_detections.json')
        with open(path, 'w') as f:
            json.dump(document, f)
        return path

    def _summary(self, document: dict, classes: Sequence[str],
                 score_thr: float, seconds: float, name: str) -> str:
        """One status line: detections per class, time, backend."""
        counts = Counter(classes[a['category_id'] - 1]
                         for a in document['annotations'])
        total = sum(counts.values())
        if total:
            found = (f'**{total} detection{"s" if total > 1 else ""}** '
                     f'scoring above {score_thr:.2f}: ' +
                     ', '.join(f'{n} {cls}'
                               for cls, n in sorted(counts.items())))
        else:
            found = f'**No detection** scores above {score_thr:.2f}'
        backend = backend_of(self.choices[name].checkpoint)
        device = 'cpu' if backend == 'onnxruntime' else self.device
        return (f'{found}. Inference {seconds * 1000:.0f} ms '
                f'({backend} on {device}).')

    def page(self) -> 'gr.Blocks':
        """The page: the model list across the top; upload, threshold and
        Run on the left; the drawn result, the status line and the JSON
        download on the right."""
        names = list(self.choices)
        with gr.Blocks(
                title='CenterMask demo', analytics_enabled=False) as page:
            gr.Markdown('## CenterMask: instance segmentation demo')
            model = gr.Dropdown(
                names, value=names[0], label='Model', elem_id='model')
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.File(
                        label='Image',
                        file_types=['image'],
                        type='filepath',
                        elem_id='upload')
                    score_thr = gr.Slider(
                        0.0,
                        1.0,
                        value=self.score_thr,
                        step=0.01,
                        label='Score threshold',
                        info='draw and export the detections scoring above '
                        'it',
                        elem_id='score-thr')
                    run = gr.Button('Run', variant='primary', elem_id='run')
                with gr.Column(scale=2):
                    result = gr.Image(
                        label='Result',
                        format='png',
                        height=RESULT_HEIGHT,
                        interactive=False,
                        elem_id='result')
                    status = gr.Markdown(
                        'Upload an image, then press **Run**.',
                        elem_id='status')
                    download = gr.DownloadButton(
                        'Download COCO JSON', elem_id='download')
            run.click(
                self.run,
                inputs=[model, image, score_thr],
                outputs=[result, status, download])
        return page


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        'checkpoint', help='checkpoint file, or an exported .onnx model')
    parser.add_argument(
        '--model',
        nargs=2,
        action='append',
        default=[],
        metavar=('CONFIG', 'CHECKPOINT'),
        help='another model for the page\'s list (repeatable)')
    parser.add_argument(
        '--host',
        default='127.0.0.1',
        help='address to serve on (0.0.0.0: every network interface)')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument(
        '--device', default='cpu', help='device of PyTorch models')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='the threshold the page starts with')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO)
    try:
        choices = model_choices([(args.config, args.checkpoint),
                                 *map(tuple, args.model)])
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix='web_demo_') as out_dir:
        demo = WebDemo(choices, args.device, args.score_thr, out_dir)
        try:  # fail now, not on the first image
            demo.inferencer(choices[0].name)
        except Exception as error:  # noqa: B902 (any load error, one line)
            print(
                f'error: model {choices[0].name} could not be loaded: '
                f'{type(error).__name__}: {error}',
                file=sys.stderr)
            return 1
        demo.page().launch(
            server_name=args.host, server_port=args.port, css=CSS)
    return 0


if __name__ == '__main__':
    sys.exit(main())
