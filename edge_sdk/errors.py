"""One error type for everything a user can fix: it names the problem and the fix.

The CLI prints ``str(error)`` on one line and exits non-zero; library callers catch
:class:`EdgeSDKError` (or its subclasses) instead of a traceback from deep inside torch.
"""

__all__ = ["EdgeSDKError", "DataError", "ModelFileError", "ConfigError"]


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
