"""Exceptions of the sluice client.

Every error is a ``SluiceError`` with ``.code`` (the broker's stable error
name, such as ``"topic_not_found"``, or None for errors of the client's
own) and ``.message``. Catch the subclass for the case you handle.
"""

from __future__ import annotations

from typing import Optional


class SluiceError(Exception):
    """An error from the broker or the client."""

    def __init__(self, message: str, code: Optional[str] = None, number: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.number = number

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


# Refused by the broker, one class per case a caller handles.
class Unauthorized(SluiceError):
    """No valid credentials (token or client certificate)."""


class Forbidden(SluiceError):
    """The principal may not do this."""


class InvalidTopic(SluiceError, ValueError):
    """A topic name is not valid."""


class InvalidPattern(SluiceError, ValueError):
    """A subscription pattern is not valid."""


class NoSuchTopic(SluiceError, LookupError):
    """The topic does not exist."""


class TopicExists(SluiceError):
    """The topic exists already."""


class InvalidArgument(SluiceError, ValueError):
    """A value the broker cannot accept."""


class LimitExceeded(SluiceError):
    """A configured limit was reached (connections, subscriptions, sizes)."""


class InvalidGroup(SluiceError, ValueError):
    """A consumer group name is not valid."""


class NoSuchGroup(SluiceError, LookupError):
    """The consumer group does not exist."""


class UnknownDelivery(SluiceError):
    """The settled message is not pending in that group."""


class StaleSettle(SluiceError):
    """The delivery is no longer in flight (ack wait ran out, or it went to
    another member): nothing changed, its current holder settles it."""


class DeliveryLost(StaleSettle):
    """The delivery came over a connection lost since: the group delivers
    it again."""


class Rejected(SluiceError):
    """A plugin rejected the message: it was not stored."""


class NotStored(SluiceError):
    """A plugin dropped or dead-lettered the message: it was not stored
    where it was published."""


class StorageError(SluiceError):
    """The broker's storage failed; the request's effect is unknown."""


class StorageFull(StorageError):
    """The disk or quota is full: nothing was stored. Retry later."""


class ShuttingDown(SluiceError):
    """The broker is shutting down."""


class NoResponders(SluiceError):
    """Nobody answers requests on that topic (on any node)."""


class RequestTimeout(SluiceError, TimeoutError):
    """No reply came within the request's timeout."""


class ResponderError(SluiceError):
    """The responder answered with an error (its message)."""


class NotWaiting(SluiceError):
    """Nobody waits for this reply any more: another reply came first,
    or the request timed out."""


class ProtocolError(SluiceError):
    """The client and the broker did not understand each other."""


class InternalError(SluiceError):
    """An unexpected broker error."""


# The client's own.
class ConfigError(SluiceError, ValueError):
    """The connection settings are not usable (an unreadable CA file, ...)."""


class Unreachable(SluiceError, ConnectionError):
    """No broker address answered (when connecting, or within
    ``reconnect_timeout`` after the connection was lost)."""


class ConnectionLost(SluiceError, ConnectionError):
    """The connection was lost or closed by the broker."""


class Closed(SluiceError):
    """The client, subscription or consumer is closed."""


class Timeout(SluiceError, TimeoutError):
    """Nothing arrived in time."""


_BY_CODE = {
    "malformed_frame": ProtocolError,
    "frame_too_large": ProtocolError,
    "unsupported_version": ProtocolError,
    "handshake_required": ProtocolError,
    "protocol_violation": ProtocolError,
    "unknown_request": ProtocolError,
    "unknown_subscription": ProtocolError,
    "subscription_exists": ProtocolError,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "invalid_topic": InvalidTopic,
    "invalid_pattern": InvalidPattern,
    "topic_not_found": NoSuchTopic,
    "topic_exists": TopicExists,
    "invalid_argument": InvalidArgument,
    "limit_exceeded": LimitExceeded,
    "invalid_group": InvalidGroup,
    "unknown_delivery": UnknownDelivery,
    "group_not_found": NoSuchGroup,
    "rejected": Rejected,
    "stale_settle": StaleSettle,
    "storage": StorageError,
    "shutting_down": ShuttingDown,
    "storage_full": StorageFull,
    "internal": InternalError,
    "no_responders": NoResponders,
    "request_timeout": RequestTimeout,
    "responder_error": ResponderError,
    "not_waiting": NotWaiting,
}

_BY_KIND = {
    "not_stored": NotStored,
    "config": ConfigError,
    "unreachable": Unreachable,
    "connection_lost": ConnectionLost,
    "protocol": ProtocolError,
    "closed": Closed,
    "timeout": Timeout,
    "delivery_lost": DeliveryLost,
}


def from_native(kind: Optional[str], code: Optional[str], number: Optional[int], message: str) -> SluiceError:
    """The exception for an error of the native client (internal)."""
    cls = _BY_KIND.get(kind) if kind else None
    if cls is None:
        cls = _BY_CODE.get(code, SluiceError) if code else SluiceError
    return cls(message, code, number)


__all__ = [name for name, value in globals().items() if isinstance(value, type) and issubclass(value, SluiceError)]
