"""Training data from a folder of your own clips with sound (:mod:`.video`), or from WebDataset
tar shards of many clips for many machines (:mod:`.shard_writer` writes them, :mod:`.shards`
and :mod:`.shard_stream` read and split them). AV-Digits, the
FSDD and MNIST readers and the frame and audio-window helpers the runtime shares are in the
torch-free :mod:`edge_sdk.media`."""
