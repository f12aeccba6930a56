"""Training data from a folder of your own clips with sound (:mod:`.video`). AV-Digits, the
FSDD and MNIST readers and the frame and audio-window helpers the runtime shares are in the
torch-free :mod:`edge_sdk.media`."""
