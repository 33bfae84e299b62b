"""The asyncio receive loop of subscriptions and consumers (internal).

A receive awaits `_fill`, a Rust future that takes arrived items in but
hands none out, and then takes one with `_take`, a plain call. Nothing
can cancel the task between the two, so a cancelled receive (a task
cancelled, `asyncio.wait_for` running out) leaves what arrived for the
next one: no message is lost.
"""

from __future__ import annotations


async def receive(source, timeout=None):
    # Each turn hands out an item, ends, or waits until one is at hand.
    while True:
        item = source._take()
        if item is not None:
            return item
        if source._over:
            return None
        await source._fill(timeout)


async def anext(source):
    item = await receive(source)
    if item is None:
        raise StopAsyncIteration
    return item
