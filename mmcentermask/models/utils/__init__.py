from .class_count import check_class_count
from .float32 import force_float32
from .instance_postprocess import (clip_to_canvas, output_canvas_shape,
                                   paste_masks, postprocess_instances,
                                   to_input_frame, to_output_frame)
from .point_mask_assembly import (assemble_masks, clamp_box_size,
                                  mask_bce_per_instance, masks_on_grid,
                                  paste_local_shapes, union_per_channel)

__all__ = [
    'assemble_masks', 'check_class_count', 'clamp_box_size', 'clip_to_canvas',
    'force_float32',
    'mask_bce_per_instance', 'masks_on_grid', 'output_canvas_shape',
    'paste_local_shapes', 'paste_masks', 'postprocess_instances',
    'to_input_frame', 'to_output_frame', 'union_per_channel'
]
