"""edge_sdk: audio-visual models from self-supervised pretraining to live camera+mic apps.

Importing this package imports no torch: the runtime and apps use the torch-free parts
(specs, errors, bundle reader); training code lives in submodules that import torch.
"""

from edge_sdk.errors import EdgeSDKError
from edge_sdk.spec import ModelSpec, get_spec, list_specs

__version__ = "0.1.0"
__all__ = ["EdgeSDKError", "ModelSpec", "get_spec", "list_specs", "__version__"]
