"""COCO panoptic annotations loaded without panopticapi."""
import numpy as np
from mmdet.datasets.transforms import LoadPanopticAnnotations
from mmdet.registry import TRANSFORMS

from ...evaluation.functional import VOID, rgb2id


@TRANSFORMS.register_module()
class LoadCocoPanopticAnnotations(LoadPanopticAnnotations):
    """MMDetection's ``LoadPanopticAnnotations`` decoding the PNG ids itself.

    Same arguments, keys and outputs (``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_masks`` of the things, ``gt_seg_map`` with 255 for VOID); the
    segment id of a pixel is ``R + 256 G + 256 ** 2 B``, as panopticapi's
    ``rgb2id``. The PNG is checked against ``segments_info``: an id in the
    PNG with no entry (other than 0, VOID) is an error naming the file.
    """

    def __init__(self,
                 with_bbox: bool = True,
                 with_label: bool = True,
                 with_mask: bool = True,
                 with_seg: bool = True,
                 box_type: str = 'hbox',
                 imdecode_backend: str = 'cv2',
                 backend_args: dict = None) -> None:
        # LoadPanopticAnnotations.__init__ imports panopticapi only for
        # rgb2id: run its parent's (as it does itself) and use ours.
        super(LoadPanopticAnnotations, self).__init__(
            with_bbox=with_bbox,
            with_label=with_label,
            with_mask=with_mask,
            with_seg=with_seg,
            with_keypoints=False,
            box_type=box_type,
            imdecode_backend=imdecode_backend,
            backend_args=backend_args)
        self.rgb2id = self.checked_rgb2id

    def transform(self, results: dict) -> dict:
        """Load the annotations; a missing PNG names the file and the fix."""
        self._seg_map_path = results.get('seg_map_path')
        self._segment_ids = {s['id'] for s in results.get('segments_info', [])}
        try:
            return super().transform(results)
        except FileNotFoundError:
            raise FileNotFoundError(
                f'Panoptic PNG {self._seg_map_path} of image '
                f'{results.get("img_path")} does not exist; check '
                "the dataset's data_prefix.seg (the folder of the panoptic "
                'PNGs, named as the images with .png).') from None

    def checked_rgb2id(self, rgb: np.ndarray) -> np.ndarray:
        """:func:`rgb2id`, then every non-VOID id must be a listed segment."""
        ids = rgb2id(rgb)
        unlisted = sorted(
            int(i) for i in np.unique(ids)
            if i != VOID and int(i) not in self._segment_ids)
        if unlisted:
            raise ValueError(
                f'{self._seg_map_path}: segment ids {unlisted} are in the PNG '
                'but not in the segments_info of its annotation (ids '
                f'{sorted(self._segment_ids)}); fix the panoptic JSON, or '
                'set those pixels to 0 (VOID).')
        return ids
