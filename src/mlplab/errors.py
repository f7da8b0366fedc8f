"""Exceptions that carry a message meant for the user.

The CLI prints ``str(error)`` of any :class:`MlplabError` on one line and exits
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MlplabError(Exception):
    """Base class of every error whose message is meant for the user."""


class DataError(MlplabError):
    """A data set could not be found, downloaded, read or decoded."""


class ConfigError(MlplabError):
    """A recipe, an override or a hyper-parameter is invalid."""


class ModelFileError(MlplabError):
    """A saved model or checkpoint is missing, corrupt or incompatible."""


class TrainingDiverged(MlplabError):
    """The loss or a weight became non-finite during training."""
