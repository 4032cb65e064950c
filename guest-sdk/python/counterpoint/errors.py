"""The WIT `error` variant as Python exceptions: raise one from a command or projection."""


class Error(Exception):
    """Base of every error a slice reports; `kind` is the WIT variant case."""

    kind = "store"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __eq__(self, other):
        return type(self) is type(other) and self.message == other.message

    def __hash__(self):
        return hash((self.kind, self.message))

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r})"


class Rejected(Error):
    """A business rule said no. Nothing is appended; the command is not retried."""

    kind = "rejected"


class InvalidInput(Error):
    """The input could not be decoded or is not valid."""

    kind = "invalid-input"


class Conflict(Error):
    """The append condition kept failing (reported by the host)."""

    kind = "conflict"


class NotFound(Error):
    """An unknown command, projection, automation or entity."""

    kind = "not-found"


class StoreError(Error):
    """The store failed, or a stored event could not be read."""

    kind = "store"


BY_KIND = {cls.kind: cls for cls in (Rejected, InvalidInput, Conflict, NotFound, StoreError)}


def unknown(what: str, name: str, known) -> NotFound:
    return NotFound(f"unknown {what} `{name}` (this slice has: {', '.join(known)})")
