"""Exceptions with messages meant for the person using the tool, and the command line's exit codes."""

# Exit codes of `python -m fwsvd_core` (argparse's own usage error is 2).
EXIT_OK = 0
EXIT_USAGE = 2  # the command line itself is wrong (argparse)
EXIT_ERROR = 3  # a clear message about the input or the run: model, data, ranks, files, Fisher
EXIT_MEMORY = 4  # the work does not fit in memory (estimated before, or run out of during it)
EXIT_INTERRUPTED = 130  # Ctrl-C


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


class FisherError(FwsvdError):
    """The Fisher is unusable: all zero, or most examples gave no finite gradient."""


class ExportError(FwsvdError):
    """A compressed model cannot be saved where asked without risking someone's files."""


class InsufficientMemoryError(FwsvdError):
    """The estimated memory of a step exceeds what the machine or the GPU has."""


class OutsideAllowedFolders(FwsvdError):
    """A path outside the folders a dashboard served to others may use."""
