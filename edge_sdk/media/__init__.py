"""The torch-free core media code that both the runtime and the training side use: frames
cut to the model's square (:mod:`.image`), audio windows and WAV files (:mod:`.audio`), the
FSDD and MNIST readers (:mod:`.corpora`), the digit bank and the AV-Digits scenes built from
them (:mod:`.digits`, :mod:`.avdigits`), AV-Digits rendered into a video file
(:mod:`.clipfile`) and the calibration pair file format (:mod:`.pairs`).

Only numpy, OpenCV and soxr at import (PyAV and ffmpeg where a function needs them); these
modules import nothing of ``edge_sdk`` but :mod:`edge_sdk.errors`, :mod:`edge_sdk.spec` and
each other, so the runtime may import them (it never imports ``edge_sdk.data``, models,
quant, train, objectives or checkpoint).
"""
