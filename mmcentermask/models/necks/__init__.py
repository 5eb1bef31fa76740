from .dla_up_neck import DLAUpNeck

__all__ = ['DLAUpNeck']
