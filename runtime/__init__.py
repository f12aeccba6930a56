"""The streaming runtime: sources by URI on one clock, A/V alignment, inference backends,
the concurrent pipeline, live tasks, sinks and latency statistics. Needs no torch for
ONNX Runtime, TensorRT or ExecuTorch bundles."""

__all__ = ["Pipeline", "open_source", "usage"]


def __getattr__(name):  # light import: pull in a submodule only when its name is used
    if name == "Pipeline":
        from edge_sdk.runtime.pipeline import Pipeline

        return Pipeline
    if name in ("open_source", "usage"):
        from edge_sdk.runtime import sources

        return getattr(sources, name)
    raise AttributeError(name)
