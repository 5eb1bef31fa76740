from .point_mask_assembly import (assemble_masks, clamp_box_size,
                                  paste_local_shapes)

__all__ = ['assemble_masks', 'clamp_box_size', 'paste_local_shapes']
