"""Errors a user can fix. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class TfmobileError(Exception):
    """Base: a message that says what was wrong and what to do."""


class ConfigError(TfmobileError):
    """An unknown preset, malformed YAML, or an inconsistent model/train/data config."""


class DataError(TfmobileError):
    """A missing corpus package, unreadable or misaligned files, an empty corpus."""


class TrainingError(TfmobileError):
    """Training that cannot go on, e.g. a loss that became NaN (a learning rate too high for the model)."""


class InputError(TfmobileError):
    """Bad input at inference time, e.g. a sentence longer than the model allows."""
