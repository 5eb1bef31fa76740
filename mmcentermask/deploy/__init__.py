"""Deployment: CenterMask as one ONNX graph and its ONNX Runtime runner."""
from .export import CenterMaskExportModule, check_exportable, export_onnx
from .ort_runner import ONNXRuntimeCenterMask

__all__ = [
    'CenterMaskExportModule', 'check_exportable', 'export_onnx',
    'ONNXRuntimeCenterMask'
]
