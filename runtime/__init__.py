"""The streaming runtime: sources by URI on one clock, A/V alignment, inference backends,
the concurrent pipeline, live tasks, sinks by URI and latency statistics. Needs no torch for
ONNX Runtime, TensorRT or ExecuTorch bundles, and never imports training code.

The public entry points, each in one hop::

    from edge_sdk.runtime import Pipeline, MultiPipeline, PipelineConfig, open_source, open_sink, open_towers
"""

__all__ = [
    "Pipeline",
    "MultiPipeline",
    "StreamSpec",
    "PipelineConfig",
    "Interrupted",
    "open_source",
    "open_sink",
    "open_towers",
    "runner_for",
    "pick_backend",
]

_HOMES = {
    "Pipeline": "pipeline",
    "Interrupted": "pipeline",
    "MultiPipeline": "multi",
    "StreamSpec": "multi",
    "PipelineConfig": "config",
    "open_source": "sources",
    "open_sink": "sinks",
    "open_towers": "backends",
    "runner_for": "backends",
    "pick_backend": "backends",
}


def __getattr__(name):  # light import: pull in a submodule only when one of its names is used
    if name not in _HOMES:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"edge_sdk.runtime.{_HOMES[name]}"), name)
