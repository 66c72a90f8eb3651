"""Errors an artist can act on: what happened, and what to do about it.

Every failure that reaches the panel is a `CloudError`; `message` and `action` are one
sentence each, written for someone who has never used the AWS console. `detail` keeps the
technical cause (AWS error code, request id) for the job log, never for the panel.
"""

from __future__ import annotations


class CloudError(Exception):
    """A failure with a plain-words message and the next step for the artist."""

    def __init__(self, message: str, action: str = "", *, code: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.action = action
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} {self.action}".strip()


class Cancelled(CloudError):
    """The artist pressed Cancel; not a failure, but it stops the work the same way."""

    def __init__(self, message: str = "Cancelled.") -> None:
        super().__init__(message, code="Cancelled")
