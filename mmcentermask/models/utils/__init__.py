from .point_mask_assembly import (assemble_masks, clamp_box_size,
                                  mask_bce_per_instance, masks_on_grid,
                                  paste_local_shapes, union_per_channel)

__all__ = [
    'assemble_masks', 'clamp_box_size', 'mask_bce_per_instance',
    'masks_on_grid', 'paste_local_shapes', 'union_per_channel'
]
