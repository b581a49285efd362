"""Exceptions with messages meant for the person using the tool."""


class FwsvdError(Exception):
    """Base class: its message is shown to the user as is."""


class ModelLoadError(FwsvdError):
    """The model or tokenizer could not be loaded."""


class DataError(FwsvdError):
    """Task data is missing, malformed or lacks the needed columns."""


class LabelMappingError(FwsvdError):
    """The model's labels cannot be matched to the task's labels."""


class RankError(FwsvdError):
    """A requested rank or ratio is out of range."""


class NoCompressibleLayersError(FwsvdError):
    """The model has no linear layer the tool can factorize."""


class Cancelled(FwsvdError):
    """A long computation was cancelled through its cancel hook."""
