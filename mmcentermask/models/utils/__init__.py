from .instance_postprocess import (clip_to_canvas, output_canvas_shape,
                                   paste_masks, postprocess_instances,
                                   to_input_frame, to_output_frame)

__all__ = [
    'clip_to_canvas', 'output_canvas_shape', 'paste_masks',
    'postprocess_instances', 'to_input_frame', 'to_output_frame'
]
