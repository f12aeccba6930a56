"""Quantization: calibration sets, fake-quant INT8 (sensitivity, QAT). Target recipes: edge_sdk.export.quantize."""
