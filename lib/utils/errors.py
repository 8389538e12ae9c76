"""User-facing errors.

Anything a user can fix (a bad YAML key, a missing file, a wrong setting) raises :class:`UserError`.
The command-line entry points turn it into a one-line message and exit code 2; every other exception
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An error caused by the user's input; the message must name the problem and the fix."""


class ConfigError(UserError):
    """A configuration file or override is invalid."""


class WeightsError(UserError):
    """A weight file is missing, unreadable or does not fit the model."""


class SettingsError(UserError):
    """A path setting (data root, save dir, ...) is missing or wrong."""


class DatasetError(UserError):
    """A benchmark or training dataset is missing files or does not have the layout its reader expects."""
