from .vovnet import (VoVNetConversion, c2_vovnet_key_to_mmdet,
                     check_against_reference, convert_c2_vovnet,
                     convert_mb_vovnet, convert_timm_vovnet,
                     convert_vovnet_state_dict, detect_vovnet_format,
                     fold_frozen_bn_eps, load_source_state_dict,
                     mb_vovnet_key_to_mmdet, strip_prefixes,
                     timm_vovnet_key_to_mmdet)

__all__ = [
    'VoVNetConversion', 'c2_vovnet_key_to_mmdet', 'check_against_reference',
    'convert_c2_vovnet', 'convert_mb_vovnet', 'convert_timm_vovnet',
    'convert_vovnet_state_dict', 'detect_vovnet_format', 'fold_frozen_bn_eps',
    'load_source_state_dict', 'mb_vovnet_key_to_mmdet', 'strip_prefixes',
    'timm_vovnet_key_to_mmdet'
]
