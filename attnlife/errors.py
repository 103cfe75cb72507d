"""User-fixable failures. Each carries a one-line message that names the problem and the fix.

The CLI catches `AttnlifeError`, prints `error: <message>` on one line and exits with status 2.
"""
from __future__ import annotations


class AttnlifeError(Exception):
    """Base class: a problem the user can fix; `str(err)` is the one-line message."""


class DataSourceError(AttnlifeError):
    """A dataset source is missing, empty, corrupt or of the wrong kind."""


class ChecksumError(DataSourceError):
    """A downloaded or given file does not have the expected sha256."""


class ConfigError(AttnlifeError):
    """A configuration value or override is invalid."""


class TheoryConfigError(ConfigError):
    """A theory-experiment setting (`attnlife theory ...`) is out of range."""


class UnknownMetricError(ConfigError, KeyError):
    """An attention metric name that is not in the metric registry (a KeyError too, for lookups)."""

    __str__ = Exception.__str__  # the message as written, not KeyError's quoted repr


class RunDirError(AttnlifeError):
    """A run directory is missing, incomplete or not an attnlife run."""


class CheckpointError(AttnlifeError):
    """A checkpoint is missing or cannot be read."""


class UnsupportedModelError(AttnlifeError):
    """A model architecture that a probe or weight extractor does not know."""


class StorageError(AttnlifeError):
    """A file or folder cannot be written or read: permissions, read-only or full disk, bad name."""


class OutputConflictError(AttnlifeError):
    """An output path is taken by something attnlife did not create (a user's file or folder)."""


class RunLockedError(RunDirError):
    """Another live process is writing the same run directory."""


class ProvenanceError(RunDirError):
    """A resumed run's dataset no longer matches the one recorded in its run.json."""


class DivergenceError(AttnlifeError):
    """Training produced a non-finite (or exploding) loss and was stopped."""


class TrainingInterrupted(AttnlifeError):
    """Training stopped on SIGTERM/SIGINT after writing a checkpoint; `exit_code` is 128 + signum."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class TrainingStopped(AttnlifeError):
    """A callback asked training to stop (e.g. an attention-health alert with on_alert = stop)
    after a checkpoint was written; `exit_code` is 3."""

    exit_code = 3
