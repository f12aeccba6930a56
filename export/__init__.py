"""Exporters (ONNX, TensorRT, ExecuTorch), bundles and their validation. Not yet implemented: see the README's status."""
