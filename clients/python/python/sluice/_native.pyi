# Type hints of the native module (clients/python/src). `sluice` and
# `sluice.aio` re-export these; the asyncio classes are `Client`,
# `Subscription`, `Consumer` and `Delivery` there.
from __future__ import annotations

import datetime
import os
from typing import Any, Awaitable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

__version__: str

Payload = Union[bytes, bytearray, str]
Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]]]
Start = Union[str, int, datetime.datetime]
BatchItem = Union[Tuple[str, Payload], Mapping[str, Any]]
PathLike = Union[str, os.PathLike]

class Place:
    topic: str
    offset: int
    duplicate: bool

class Stored:
    topic: str
    offset: int
    duplicate: bool
    deliver_at_ms: Optional[int]
    routed: list[Place]

class Message:
    @property
    def topic(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp_ms(self) -> int: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def key(self) -> Optional[bytes]: ...
    @property
    def headers(self) -> list[Tuple[str, str]]: ...
    @property
    def traceparent(self) -> Optional[str]: ...
    def header(self, name: str) -> Optional[str]: ...
    @property
    def message_id(self) -> Optional[str]: ...
    @property
    def attempt(self) -> int: ...
    def text(self) -> str: ...

class TopicInfo:
    name: str
    start_offset: int
    next_offset: int
    messages: int
    bytes: int
    max_age: Optional[float]
    max_bytes: Optional[int]
    max_messages: Optional[int]
    waiting: int
    default_ttl: Optional[float]

class GroupInfo:
    name: str
    pattern: str
    members: int
    lag: int
    pending: int
    redeliveries: int
    dead_lettered: int
    dead_letter_topic: Optional[str]
    max_deliver: int

class Client:
    @staticmethod
    def connect(
        servers: Union[str, Sequence[str]],
        *,
        ca: Optional[PathLike] = None,
        token: Optional[str] = None,
        cert: Optional[PathLike] = None,
        key: Optional[PathLike] = None,
        insecure: bool = False,
        name: Optional[str] = None,
        server_name: Optional[str] = None,
        reconnect_timeout: Optional[float] = None,
    ) -> Client: ...
    @property
    def server(self) -> str: ...
    def publish(
        self,
        topic: str,
        payload: Payload,
        *,
        key: Optional[Payload] = None,
        headers: Optional[Headers] = None,
        message_id: Optional[str] = None,
        delay: Optional[float] = None,
        deliver_at: Optional[datetime.datetime] = None,
        ttl: Optional[float] = None,
    ) -> Stored: ...
    def publish_many(
        self, messages: Iterable[BatchItem], *, return_exceptions: bool = False
    ) -> list[Union[Stored, BaseException]]: ...
    def subscribe(
        self,
        pattern: str,
        start: Start = "latest",
        *,
        plugin: Optional[str] = None,
        plugin_config: Optional[str] = None,
    ) -> Subscription: ...
    def consume(
        self,
        pattern: str,
        group: str,
        *,
        max_in_flight: Optional[int] = None,
        max_deliver: Optional[int] = None,
        key_order: bool = False,
        ack_wait: Optional[float] = None,
        backoff: Optional[Sequence[float]] = None,
        dead_letter_topic: Optional[str] = None,
        start: Optional[Start] = None,
        limit: Optional[int] = None,
        plugin: Optional[str] = None,
        plugin_config: Optional[str] = None,
    ) -> Consumer: ...
    def create_topic(
        self,
        name: str,
        *,
        max_age: Optional[float] = None,
        max_bytes: Optional[int] = None,
        max_messages: Optional[int] = None,
    ) -> TopicInfo: ...
    def delete_topic(self, name: str) -> None: ...
    def list_topics(self) -> list[TopicInfo]: ...
    def topic_info(self, name: str) -> TopicInfo: ...
    def list_groups(self) -> list[GroupInfo]: ...
    def group_info(self, name: str) -> GroupInfo: ...
    def reset_group(self, name: str, start: Start) -> GroupInfo: ...
    def ping(self) -> float: ...
    def close(self) -> None: ...
    def __enter__(self) -> Client: ...
    def __exit__(self, *exc: object) -> None: ...

class Subscription:
    def __iter__(self) -> Iterator[Message]: ...
    def __next__(self) -> Message: ...
    def receive(self, timeout: Optional[float] = None) -> Optional[Message]: ...
    @property
    def dropped(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Subscription: ...
    def __exit__(self, *exc: object) -> None: ...

class Delivery(Message):
    def ack(self) -> None: ...
    def nack(self, delay: Optional[float] = None) -> None: ...
    def reject(self, reason: str) -> None: ...
    def in_progress(self) -> None: ...

class Consumer:
    def __iter__(self) -> Iterator[Delivery]: ...
    def __next__(self) -> Delivery: ...
    def receive(self, timeout: Optional[float] = None) -> Optional[Delivery]: ...
    def ack_many(self, deliveries: Sequence[Delivery]) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Consumer: ...
    def __exit__(self, *exc: object) -> None: ...

class AsyncClient:
    @staticmethod
    def connect(
        servers: Union[str, Sequence[str]],
        *,
        ca: Optional[PathLike] = None,
        token: Optional[str] = None,
        cert: Optional[PathLike] = None,
        key: Optional[PathLike] = None,
        insecure: bool = False,
        name: Optional[str] = None,
        server_name: Optional[str] = None,
        reconnect_timeout: Optional[float] = None,
    ) -> Awaitable[AsyncClient]: ...
    @property
    def server(self) -> str: ...
    def publish(
        self,
        topic: str,
        payload: Payload,
        *,
        key: Optional[Payload] = None,
        headers: Optional[Headers] = None,
        message_id: Optional[str] = None,
        delay: Optional[float] = None,
        deliver_at: Optional[datetime.datetime] = None,
        ttl: Optional[float] = None,
    ) -> Awaitable[Stored]: ...
    def publish_many(
        self, messages: Iterable[BatchItem], *, return_exceptions: bool = False
    ) -> Awaitable[list[Union[Stored, BaseException]]]: ...
    def subscribe(
        self,
        pattern: str,
        start: Start = "latest",
        *,
        plugin: Optional[str] = None,
        plugin_config: Optional[str] = None,
    ) -> Awaitable[AsyncSubscription]: ...
    def consume(
        self,
        pattern: str,
        group: str,
        *,
        max_in_flight: Optional[int] = None,
        max_deliver: Optional[int] = None,
        key_order: bool = False,
        ack_wait: Optional[float] = None,
        backoff: Optional[Sequence[float]] = None,
        dead_letter_topic: Optional[str] = None,
        start: Optional[Start] = None,
        limit: Optional[int] = None,
        plugin: Optional[str] = None,
        plugin_config: Optional[str] = None,
    ) -> Awaitable[AsyncConsumer]: ...
    def create_topic(
        self,
        name: str,
        *,
        max_age: Optional[float] = None,
        max_bytes: Optional[int] = None,
        max_messages: Optional[int] = None,
    ) -> Awaitable[TopicInfo]: ...
    def delete_topic(self, name: str) -> Awaitable[None]: ...
    def list_topics(self) -> Awaitable[list[TopicInfo]]: ...
    def topic_info(self, name: str) -> Awaitable[TopicInfo]: ...
    def list_groups(self) -> Awaitable[list[GroupInfo]]: ...
    def group_info(self, name: str) -> Awaitable[GroupInfo]: ...
    def reset_group(self, name: str, start: Start) -> Awaitable[GroupInfo]: ...
    def ping(self) -> Awaitable[float]: ...
    def close(self) -> Awaitable[None]: ...
    def __aenter__(self) -> Awaitable[AsyncClient]: ...
    def __aexit__(self, *exc: object) -> Awaitable[None]: ...

class AsyncSubscription:
    def __aiter__(self) -> AsyncSubscription: ...
    def __anext__(self) -> Awaitable[Message]: ...
    def receive(self, timeout: Optional[float] = None) -> Awaitable[Optional[Message]]: ...
    @property
    def dropped(self) -> int: ...
    def close(self) -> Awaitable[None]: ...
    def __aenter__(self) -> Awaitable[AsyncSubscription]: ...
    def __aexit__(self, *exc: object) -> Awaitable[None]: ...

class AsyncDelivery(Message):
    def ack(self) -> Awaitable[None]: ...
    def nack(self, delay: Optional[float] = None) -> Awaitable[None]: ...
    def reject(self, reason: str) -> Awaitable[None]: ...
    def in_progress(self) -> Awaitable[None]: ...

class AsyncConsumer:
    def __aiter__(self) -> AsyncConsumer: ...
    def __anext__(self) -> Awaitable[AsyncDelivery]: ...
    def receive(self, timeout: Optional[float] = None) -> Awaitable[Optional[AsyncDelivery]]: ...
    def ack_many(self, deliveries: Sequence[AsyncDelivery]) -> Awaitable[None]: ...
    def close(self) -> Awaitable[None]: ...
    def __aenter__(self) -> Awaitable[AsyncConsumer]: ...
    def __aexit__(self, *exc: object) -> Awaitable[None]: ...
