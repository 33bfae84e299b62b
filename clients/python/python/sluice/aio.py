"""The asyncio API of the sluice client: the blocking API's calls, each
awaited. Calls await Rust futures on the client's runtime (no thread per
call); cancelling a task cancels its call and leaves the connection
usable::

    import sluice.aio

    async with await sluice.aio.Client.connect("127.0.0.1:4433", ca="cert.pem") as client:
        await client.publish("orders.created", b"order 1")
        async with await client.consume("orders.>", "billing") as billing:
            async for delivery in billing:
                await delivery.ack()
"""

from ._native import AsyncClient as Client
from ._native import AsyncConsumer as Consumer
from ._native import AsyncDelivery as Delivery
from ._native import AsyncRequest as Request
from ._native import AsyncResponder as Responder
from ._native import AsyncSubscription as Subscription
from ._native import GroupInfo, Message, Place, Reply, Stored, TopicInfo
from . import errors
from .errors import *  # noqa: F401,F403

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
] + errors.__all__
