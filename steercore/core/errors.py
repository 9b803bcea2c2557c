"""Exceptions whose message is one line that names what is wrong and what to do about it.

Scripts catch `SteerError` and print its message alone; anything else is a bug and keeps its traceback.
"""


class SteerError(Exception):
    """A user-facing error: bad input, bad file, missing weights. The message is a single line."""


class ConfigError(SteerError):
    """A configuration value is missing, unknown or of the wrong type."""


class FileFormatError(SteerError):
    """A statistics/vector file is unreadable, truncated or of the wrong kind."""


class ShapeMismatchError(SteerError):
    """A file or tensor does not fit the model/site it is applied to."""


class MissingWeightsError(SteerError):
    """Model or scorer weights are neither cached locally nor downloadable (offline)."""


class DiskFullError(SteerError):
    """A write ran out of space (full disk, quota, file-size limit); nothing partial was left behind."""
