"""One error type for everything a user can fix: it names the problem and the fix.

The CLI prints ``str(error)`` on one line and exits non-zero; library callers catch
:class:`EdgeSDKError` (or its subclasses) instead of a traceback from deep inside torch.
"""

__all__ = ["EdgeSDKError", "DataError", "ModelFileError", "ConfigError", "EXTRAS", "missing_package"]


class EdgeSDKError(Exception):
    """A problem with the user's input, with what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} -- fix: {fix}" if fix else problem)


class DataError(EdgeSDKError):
    """A data file or folder is missing, empty, corrupt or of the wrong format."""


class ModelFileError(EdgeSDKError):
    """A checkpoint or model file is missing, corrupt or made for another spec."""


class ConfigError(EdgeSDKError):
    """A recipe or option is invalid (unknown key, wrong type, out of range)."""


# What each optional extra of pyproject.toml installs (by import name).
EXTRAS = {
    "train": ("torch", "safetensors", "tqdm", "matplotlib", "webdataset", "braceexpand"),
    "export": ("torch", "onnx", "onnxscript", "safetensors", "modelopt"),
    "executorch": ("executorch", "torchao"),
    "live": ("sounddevice", "av"),
    "tensorrt": ("tensorrt", "cuda", "modelopt"),
}


def missing_package(error: ModuleNotFoundError, prefer: str | None = None) -> EdgeSDKError | None:
    """The error for an optional package that is not installed, naming the extra that brings
    it (``prefer`` when that extra has it: the one a command needs as a whole); None when the
    missing module is not one of the SDK's optional packages, or that package is installed
    and lacks the module (a version problem or a bug: let it raise)."""
    import importlib.util

    package = (error.name or "").split(".")[0]
    if not package or importlib.util.find_spec(package) is not None:  # installed: a module it lacks is another problem
        return None
    extras = [prefer] if prefer in EXTRAS and package in EXTRAS[prefer] else [e for e, pkgs in EXTRAS.items() if package in pkgs]
    if not extras:
        return None
    return EdgeSDKError(f"this needs {package}, which is not installed here", f"pip install 'edge_sdk[{extras[0]}]'")
