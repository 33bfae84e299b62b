"""The Python client of the sluice message broker.

Blocking API here; the same for asyncio in ``sluice.aio``::

    import sluice

    with sluice.Client.connect("127.0.0.1:4433", ca="sluice-data/tls/cert.pem") as client:
        stored = client.publish("orders.created", b'{"id": 1}')
        for message in client.subscribe("orders.>", start="earliest"):
            print(message.topic, message.offset, message.payload)

Both run over the Rust client (``sluice-client``): publishes pipeline,
lost connections are replaced (publishes go again with their ids and are
stored once, subscriptions resume, consumers rejoin), and every wait
releases the GIL.
"""

from ._native import (
    Client,
    Consumer,
    Delivery,
    GroupInfo,
    Message,
    Place,
    Reply,
    Request,
    Responder,
    Stored,
    Subscription,
    TopicInfo,
    __version__,
)
from . import errors
from .errors import *  # noqa: F401,F403  (the exception classes)

__all__ = [
    "Client",
    "Consumer",
    "Delivery",
    "GroupInfo",
    "Message",
    "Place",
    "Reply",
    "Request",
    "Responder",
    "Stored",
    "Subscription",
    "TopicInfo",
    "errors",
    "__version__",
] + errors.__all__
