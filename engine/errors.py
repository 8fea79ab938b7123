"""Typed errors of the engine. They carry no HTTP status: server/app.py maps them once.

Messages are the text a client sees after Qdrant's prefix, so they follow Qdrant's wording
(Qdrant 1.19, read from its source): e.g. NotFound("Collection `x` doesn't exist!").
"""

from __future__ import annotations


class KeelError(Exception):
    """Base of every error the engine raises on purpose."""


class BadRequest(KeelError):
    """The client's input is wrong; nothing was written. Qdrant: 400 `Wrong input: ...`."""


class FormatError(BadRequest):
    """The body is not of the accepted shape. Qdrant: 400 `Format error in JSON body: ...`."""


class ValidationError(BadRequest):
    """A field breaks a bound. Qdrant: 422 `Validation error in JSON body: [...]`."""


class NotFound(KeelError):
    """A collection or point does not exist. Qdrant: 404 `Not found: ...`."""


class Conflict(KeelError):
    """The thing to create exists already. Qdrant: 409."""


class Overloaded(KeelError):
    """The write budget stayed exhausted past its deadline; retry later."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StrictModeError(KeelError):
    """Strict mode refuses the request; nothing ran. Qdrant: 400 `Bad request: ...`."""


class RateLimited(KeelError):
    """A strict-mode rate limit has too few tokens for the request; nothing ran. Qdrant: 429
    `Rate limiting exceeded: ...` with Retry-After, none when the request can never fit."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotReady(KeelError):
    """Recovery has not finished; the storage is not open yet."""


class NotImplementedYet(KeelError):
    """Part of Qdrant's API that Keel does not implement yet (an honest 501)."""


class StorageError(KeelError):
    """The disk failed us (fsync, write, LMDB). The collection's write path is closed."""


class CorruptionError(StorageError):
    """Data on disk is damaged in a way that could lose acknowledged writes; refuse to start."""


class StorageLocked(StorageError):
    """Another process holds the storage directory's lock."""


def missing_vector_name(name: str) -> BadRequest:
    """Qdrant's error for a vector name the collection does not have, in Qdrant's words."""
    return BadRequest(f"Not existing vector name error: {name}")
