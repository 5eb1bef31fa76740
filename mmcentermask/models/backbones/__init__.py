from .dla import DLA
from .vovnet import VoVNet

__all__ = ['DLA', 'VoVNet']
