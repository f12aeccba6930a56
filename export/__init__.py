"""Export: one exporter per target (:mod:`.onnxruntime`, :mod:`.tensorrt`, :mod:`.executorch`, and
the PyTorch reference :mod:`.weights`) on one protocol (:mod:`.base`); ``edge-sdk export``
(:mod:`.engine`) and the INT8 policy ``edge-sdk quantize`` (:mod:`.quantize`) over them; the
cross-format and runtime benchmarks (:mod:`.bench`, :mod:`.bench_runtime`)."""
