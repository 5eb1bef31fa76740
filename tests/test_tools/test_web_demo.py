"""tools/web_demo.py end to end in a real headless browser.

The server runs a tiny random-weight CenterMask (and its ONNX export) on a
free port; Debian's Chromium, driven by selenium through the system
chromedriver, loads the page, uploads images, sets the threshold, presses
Run, reads the drawn result and downloads the COCO JSON. The PyTorch result
must match ``tools/demo.py`` on the same image (see :func:`assert_matches`).

The browser stack is the ``demo`` extra (gradio, selenium) plus
``apt-get install chromium chromium-driver``: where it is missing these tests
fail, naming what to install (CI installs it, ``.ci/run``).

:class:`Page` and :func:`browser_options` also took the README's picture
(``docs/images/web_demo.png``) of the quick start's checkpoint.
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from pycocotools.coco import COCO

from repo_paths import REPO_ROOT
from detector_utils import TINY_MODEL_LINES
from mmcentermask.datasets import make_image

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu',
                  '--disable-quic', '--no-first-run',
                  '--disable-background-networking',
                  '--disable-component-update', '--disable-sync',
                  '--window-size=1280,760')
QUICK_START = osp.join(
    REPO_ROOT, 'configs/centermask/'
    'centermask-lite_vovnet-v2-19-slim-dw_fpn-64_1xb8-1600i_shapes.py')
TINY = """
_base_ = {base!r}
{tiny_model}test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""
CLASSES = ('circle', 'rectangle', 'triangle')
SERVER_START_S = 240
RUN_S = 120
# "Matches demo.py": the same detections (label, score within 1e-4, box
# within 0.05 px, mask IoU >= 0.98 or both masks empty) and, outside the
# masks, pictures with at most 1 % of the pixels differing by more than 8
# levels (room for a box edge to move by a pixel on other float32
# rounding). Inside the masks the colours differ by design: MMDetection's
# visualizer jitters each mask's colour with numpy's global random numbers.
SCORE_TOL = 1e-4
BOX_TOL = 0.05
MASK_IOU_MIN = 0.98
PIXEL_TOL = 8
PIXEL_FRACTION_MAX = 0.01


def require_browser_stack():
    """Fail (never skip) when a part of the browser stack is missing."""
    try:
        import gradio  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as error:
        pytest.fail(f'the web demo test needs the demo extra ({error}): '
                    'pip install -e ".[demo]"')
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f'{path} is missing: apt-get install -y chromium '
                        'chromium-driver')


@pytest.fixture(scope='module')
def files(tmp_path_factory) -> dict:
    """The tiny model (config, checkpoint, ONNX export), a shapes image
    and a text file named .jpg."""
    require_browser_stack()
    root = tmp_path_factory.mktemp('web_demo')
    image, _ = make_image(np.random.default_rng(3), 96, 128, 3)
    cv2.imwrite(str(root / 'shapes.png'), image[..., ::-1])
    (root / 'notes.jpg').write_text('not an image\n')
    files = dict(
        image=str(root / 'shapes.png'),
        text=str(root / 'notes.jpg'),
        config=str(root / 'tiny.py'),
        checkpoint=str(root / 'tiny.pth'))
    (root / 'tiny.py').write_text(
        TINY.format(tiny_model=TINY_MODEL_LINES, base=QUICK_START))
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(files['config']).model)
    model.init_weights()
    # random weights give empty masks; constant logits sigmoid(4) = 0.98
    # make every mask fill its box, so that masks are drawn and compared
    model.roi_head.mask_head.conv_logits.weight.data.zero_()
    model.roi_head.mask_head.conv_logits.bias.data.fill_(4.0)
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=CLASSES))),
        files['checkpoint'])
    files['onnx'] = str(root / 'tiny.onnx')
    run_tool('tools/deployment/pytorch2onnx.py', files['config'],
             files['checkpoint'], '--out', files['onnx'], '--dynamic')
    return files


def run_tool(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Server(NamedTuple):
    """The running web demo: its address and its console output."""
    url: str
    log: Path


@pytest.fixture(scope='module')
def server(files, tmp_path_factory) -> Iterator[Server]:
    """The web demo serving the model and its ONNX export."""
    port = free_port()
    log = tmp_path_factory.mktemp('server') / 'server.log'
    env = dict(
        os.environ,
        GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp('gradio')),
        GRADIO_ANALYTICS_ENABLED='False')
    command = [
        sys.executable, 'tools/web_demo.py', files['config'],
        files['checkpoint'], '--model', files['config'], files['onnx'],
        '--port',
        str(port)
    ]
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        yield Server(url, log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def browser_options(profile_dir: str, download_dir: str):
    """Headless Chromium that saves downloads to ``download_dir``."""
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f'--user-data-dir={profile_dir}')
    options.add_experimental_option(
        'prefs', {
            'download.default_directory': download_dir,
            'download.prompt_for_download': False
        })
    return options


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    """Chromium under chromedriver; ``browser.download_dir`` receives the
    downloads."""
    require_browser_stack()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    download_dir = str(tmp_path_factory.mktemp('downloads'))
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER),
        options=browser_options(
            str(tmp_path_factory.mktemp('chromium_profile')), download_dir))
    driver.download_dir = download_dir
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The web demo's page in the browser (element ids of web_demo.py)."""

    def __init__(self, driver, url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver, self.by, self.wait = driver, By, WebDriverWait
        driver.get(url)
        self.wait(driver, 60).until(lambda d: self.find('#run'))

    def find(self, css: str):
        found = self.driver.find_elements(self.by.CSS_SELECTOR, css)
        return found[0] if found else None

    def text(self, css: str) -> str:
        element = self.find(css)
        return element.text if element is not None else ''

    def upload(self, path: str) -> None:
        """Choose a file (instead of the one shown) and wait until the page
        lists it."""
        clear = self.find('#upload button[aria-label="Clear"]')
        if clear is not None:
            clear.click()
        self.wait(self.driver,
                  30).until(lambda d: self.find('#upload input[type=file]'))
        self.find('#upload input[type=file]').send_keys(path)
        listed = f'#upload td.filename[aria-label="{osp.basename(path)}"]'
        self.wait(self.driver, 60).until(lambda d: self.find(listed))

    def set_score_thr(self, value: float) -> None:
        from selenium.webdriver.common.keys import Keys
        field = self.find('#score-thr input[type=number]')
        field.send_keys(Keys.CONTROL, 'a')
        field.send_keys(str(value), Keys.TAB)

    def choose_model(self, name: str) -> None:
        """Open the model list and pick the entry called ``name``."""
        option = f'#model li[role=option][aria-label="{name}"]'
        self.find('#model input').click()
        self.wait(self.driver, 30).until(lambda d: self.find(option))
        self.find(option).click()
        self.wait(self.driver, 30).until(
            lambda d: self.find('#model input').get_attribute('value') == name)

    def run(self, expected: str) -> str:
        """Press Run; the status line once it contains ``expected``."""
        before = self.text('#status')
        self.find('#run').click()
        self.wait(self.driver, RUN_S).until(lambda d: expected in self.text(
            '#status') and self.text('#status') != before)
        return self.text('#status')

    def result_src(self) -> str:
        image = self.find('#result img')
        return image.get_attribute('src') if image is not None else ''

    def result(self) -> np.ndarray:
        """The drawn result as the page shows it, (H, W, 3) uint8 RGB."""
        with urllib.request.urlopen(self.result_src(), timeout=30) as f:
            data = np.frombuffer(f.read(), np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]

    def download(self, name: str) -> dict:
        """Click the download button; the saved file's JSON."""
        self.find('#download').click()
        path = osp.join(self.driver.download_dir, name)
        self.wait(self.driver, 30).until(lambda d: osp.isfile(path))
        with open(path) as f:
            return json.load(f)


def demo_py(files: dict, out_dir: str) -> tuple:
    """tools/demo.py's picture ((H, W, 3) RGB) and predictions (all
    scores) of the test image."""
    run_tool('tools/demo.py', files['image'], files['config'],
             files['checkpoint'], '--out-dir', out_dir, '--score-thr', '0.0')
    name = osp.basename(files['image'])
    picture = cv2.imread(osp.join(out_dir, 'vis', name))[..., ::-1]
    with open(osp.join(out_dir, 'preds',
                       osp.splitext(name)[0] + '.json')) as f:
        return picture, json.load(f)


def assert_matches(annotations: List[dict], preds: dict,
                   score_thr: float) -> None:
    """The page's COCO annotations are demo.py's predictions above
    ``score_thr`` (tolerances at the top of the module)."""
    expected = [i for i, s in enumerate(preds['scores']) if s > score_thr]
    assert len(annotations) == len(expected)
    unmatched = set(expected)
    for annotation in annotations:
        x, y, w, h = annotation['bbox']
        box = np.array([x, y, x + w, y + h])
        candidates = [
            i for i in unmatched
            if preds['labels'][i] + 1 == annotation['category_id']
            and abs(preds['scores'][i] - annotation['score']) <= SCORE_TOL
            and np.abs(np.array(preds['bboxes'][i]) - box).max() <= BOX_TOL
        ]
        assert candidates, f'no demo.py detection matches {annotation}'
        index = candidates[0]
        unmatched.remove(index)
        page_mask = mask_util.decode(annotation['segmentation'])
        demo_mask = mask_util.decode(preds['masks'][index])
        union = np.logical_or(page_mask, demo_mask).sum()
        if union:
            iou = np.logical_and(page_mask, demo_mask).sum() / union
            assert iou >= MASK_IOU_MIN, (annotation['id'], iou)


def assert_pictures_match(page: np.ndarray,
                          demo: np.ndarray,
                          masks: Optional[List[dict]] = None) -> None:
    """Pixels of two (H, W, 3) pictures agree outside the RLE ``masks``."""
    assert page.shape == demo.shape
    outside = np.ones(page.shape[:2], dtype=bool)
    for mask in masks or []:
        outside &= mask_util.decode(mask) == 0
    assert outside.mean() > 0.5  # most of the picture is compared
    differing = np.abs(page.astype(int) - demo.astype(int)).max(-1) > PIXEL_TOL
    assert differing[outside].mean() <= PIXEL_FRACTION_MAX, differing.mean()


@pytest.mark.slow
def test_upload_draws_as_demo_py_and_downloads_coco_json(
        files, server, browser, tmp_path):
    demo_picture, preds = demo_py(files, str(tmp_path / 'demo'))
    page = Page(browser, server.url)
    page.upload(files['image'])

    # a threshold above every score: nothing drawn, the page says so
    high = 0.95
    assert max(preds['scores']) < high - 0.01
    page.set_score_thr(high)
    status = page.run(f'above {high:.2f}')
    assert status.startswith('No detection scores above 0.95. Inference ')
    assert status.endswith(' ms (pytorch on cpu).')
    assert_pictures_match(page.result(), cv2.imread(files['image'])[..., ::-1])

    # every detection drawn: demo.py's picture and predictions
    page.set_score_thr(0.0)
    status = page.run('above 0.00')
    total = len(preds['scores'])
    assert status.startswith(f'{total} detections scoring above 0.00: ')
    assert sum(mask_util.area(preds['masks'])) > 0  # masks are drawn
    assert_pictures_match(page.result(), demo_picture, preds['masks'])

    document = page.download('shapes_detections.json')
    assert document['images'] == [
        dict(id=1, file_name='shapes.png', height=96, width=128)
    ]
    assert_matches(document['annotations'], preds, 0.0)
    scores = [a['score'] for a in document['annotations']]
    assert scores == sorted(scores, reverse=True)
    with tempfile.NamedTemporaryFile('w', suffix='.json') as f:
        json.dump(document, f)
        f.flush()
        coco = COCO(f.name)  # pycocotools reads it as a COCO file
    assert [c['name']
            for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    results = coco.loadRes(document['annotations'])  # and as results
    assert len(results.getAnnIds()) == total


@pytest.mark.slow
def test_text_file_named_jpg_shows_the_reason_and_keeps_the_result(
        files, server, browser):
    page = Page(browser, server.url)
    page.run('No image yet')  # Run before any upload: says what to do
    page.upload(files['image'])
    page.run('Inference')
    drawn = page.result_src()
    page.upload(files['text'])
    status = page.run('not a readable image')
    assert status == ('notes.jpg is not a readable image: not an image '
                      'OpenCV can decode (13 bytes). Upload a JPEG, PNG, '
                      'BMP, TIFF or WebP image.')
    assert page.result_src() == drawn  # the last good result stays


@pytest.mark.slow
def test_models_chosen_on_the_page_load_once(files, server, browser):
    page = Page(browser, server.url)
    pytorch_name = page.find('#model input').get_attribute('value')
    onnx_name = f'{osp.basename(files["config"])} | tiny.onnx'
    page.choose_model(onnx_name)
    page.upload(files['image'])
    page.set_score_thr(0.0)
    status = page.run('(onnxruntime on cpu)')
    assert ' detections scoring above 0.00: ' in status
    assert page.result().shape == (96, 128, 3)
    page.choose_model(pytorch_name)
    page.run('(pytorch on cpu)')
    log = server.log.read_text()
    # the first model at start-up, the export when first chosen; never again
    assert log.count(f'loading {pytorch_name}\n') == 1, log[-3000:]
    assert log.count(f'loading {onnx_name}\n') == 1, log[-3000:]


@pytest.mark.slow
def test_missing_checkpoint_is_named_before_serving(tmp_path):
    require_browser_stack()
    config = tmp_path / 'model.py'
    config.write_text('')
    missing = tmp_path / 'missing.pth'
    command = [
        sys.executable, 'tools/web_demo.py',
        str(config),
        str(missing), '--port',
        str(free_port())
    ]
    proc = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f'error: checkpoint file {missing} does not exist' in proc.stderr
