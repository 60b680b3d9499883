"""Errors raised where a problem is understood; the CLI and API turn them into a line or a 4xx."""


class RecsysError(Exception):
    """Base class: a problem the user can fix, with a message that names the thing."""


class DataError(RecsysError):
    """The dataset directory breaks its contract (file, column, type, emptiness)."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file


class BuildError(RecsysError):
    """The offline job cannot produce a usable build from the data it was given."""


class StoreError(RecsysError):
    """Redis is unreachable, or holds no usable build."""


class ArtifactError(RecsysError):
    """An artifacts directory is missing, incomplete, or from an incompatible version."""
