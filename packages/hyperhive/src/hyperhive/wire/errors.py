"""Errors that cross the wire: stable codes, and the exception that carries them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ValidationError


class ErrorCode(StrEnum):
    """Stable error codes. Clients branch on these, never on the message text."""

    INVALID_NAME = "invalid_name"
    """A name breaks the agent-name rule or is reserved."""
    INVALID_REQUEST = "invalid_request"
    """The request body is not valid JSON or does not match its model."""
    INVALID_BODY = "invalid_body"
    """A message body is empty, too large, or not valid UTF-8."""
    UNKNOWN_RECIPIENT = "unknown_recipient"
    """`to` names no agent of this hive."""
    NOT_ALLOWED = "not_allowed"
    """The caller's policy does not allow this (recipient, verb, tool)."""
    NOT_MANAGER = "not_manager"
    """A manager verb was called by an agent that is not the manager."""
    NOT_FOUND = "not_found"
    """The addressed object (agent, approval, question, message) does not exist."""
    CONFLICT = "conflict"
    """The object is not in a state that allows this (already decided, already pending, …)."""
    INBOX_FULL = "inbox_full"
    """The recipient's inbox holds as many unread messages as it may; send again once it has read some."""
    UNAUTHENTICATED = "unauthenticated"
    """The caller has no live session (never logged in, logged out, expired, or the password changed since)."""
    RATE_LIMITED = "rate_limited"
    """Too many attempts (logins) in a short time; wait, then try again."""
    UNAVAILABLE = "unavailable"
    """A dependency (NATS, PostgreSQL, a backend) is not reachable right now; try again."""
    INTERNAL = "internal"
    """A bug: the service logged it with details."""


class HiveError(Exception):
    """An expected failure with a stable code: raised in a service, sent as the NATS micro error headers
    (`Nats-Service-Error-Code`, `Nats-Service-Error`), and raised again in the client by `hyperhive.bus.call`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def first_problem(exc: ValidationError, whole: str = "input") -> tuple[str, str]:
    """Where the first problem of a validation is (`a.b`, or `whole` when it is the value itself) and what it is, in
    pydantic's words without its `Value error, ` prefix or help link: what every boundary says in one line."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    return where, first["msg"].removeprefix("Value error, ")
