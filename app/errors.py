"""The service's error root. Each maps once to an HTTP status (problem+json) and a CLI exit."""

from __future__ import annotations

from typing import Any


class AnclaError(Exception):
    """Root of errors raised by app/ services."""

    status = 500
    title = "Internal error"
    type_ = "about:blank"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra


class InvalidInput(AnclaError):
    status = 422
    title = "Invalid input"


class Unauthorized(AnclaError):
    status = 401
    title = "Unauthorized"


class Forbidden(AnclaError):
    status = 403
    title = "Forbidden"


class NotFound(AnclaError):
    status = 404
    title = "Not found"


class Conflict(AnclaError):
    status = 409
    title = "Conflict"


class TooManyRequests(AnclaError):
    status = 429
    title = "Too many requests"


class Unavailable(AnclaError):
    status = 503
    title = "Service unavailable"


class IntegrityFailure(AnclaError):
    """Stored data contradicts itself (e.g. a batch's records no longer rebuild its root)."""

    status = 500
    title = "Ledger integrity failure"
