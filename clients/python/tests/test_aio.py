"""The asyncio API against a real broker: the same calls awaited, async
iteration, and cancellation."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import sluice
import sluice.aio

SOON = 10.0


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_publish_subscribe_and_consume_with_async_for(broker):
    async def scenario():
        async with await sluice.aio.Client.connect(broker.address, ca=broker.ca) as client:
            topic = f"py.aio.{uuid.uuid4().hex[:8]}"
            await client.create_topic(topic)
            stored = await client.publish(topic, b"first", key="k")
            assert (stored.topic, stored.offset) == (topic, 0)
            await client.publish_many([(topic, f"m-{i}") for i in range(1, 4)])

            subscription = await client.subscribe(topic, start="earliest")
            got = []
            async for message in subscription:
                got.append(message.offset)
                if len(got) == 4:
                    break
            await subscription.close()
            assert got == [0, 1, 2, 3]

            group = f"g-{uuid.uuid4().hex[:8]}"
            acked = []
            async with await client.consume(topic, group) as consumer:
                async for delivery in consumer:
                    assert isinstance(delivery, sluice.aio.Delivery)
                    await delivery.ack()
                    acked.append(delivery.offset)
                    if len(acked) == 4:
                        break
            assert sorted(acked) == [0, 1, 2, 3]
            # Leaving the block asked the broker to end the member; it is
            # gone as soon as the broker has read that (bounded wait).
            deadline = asyncio.get_running_loop().time() + 10
            while (info := await client.group_info(group)).members != 0:
                assert asyncio.get_running_loop().time() < deadline, f"still a member: {info}"
                await asyncio.sleep(0.02)


            with pytest.raises(sluice.NoSuchTopic):
                await client.topic_info(f"{topic}.missing")

    run(scenario())


def test_cancelling_a_task_cancels_its_call_and_the_connection_stays_usable(broker):
    async def scenario():
        client = await sluice.aio.Client.connect(broker.address, ca=broker.ca)
        topic = f"py.aio.{uuid.uuid4().hex[:8]}"
        await client.create_topic(topic)
        subscription = await client.subscribe(topic, start="earliest")

        waiting = asyncio.ensure_future(subscription.receive())
        done, _ = await asyncio.wait({waiting}, timeout=0.2)
        assert not done, "nothing was published: the receive waits"
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

        # Timeouts through asyncio cancel the same way.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(subscription.receive(), 0.1)

        await client.publish(topic, b"after the cancel")
        message = await subscription.receive(timeout=SOON)
        assert message.payload == b"after the cancel"
        assert await client.ping() >= 0
        await client.close()

    run(scenario())


def test_concurrent_calls_share_one_connection(broker):
    async def scenario():
        client = await sluice.aio.Client.connect(broker.address, ca=broker.ca)
        topic = f"py.aio.{uuid.uuid4().hex[:8]}"
        await client.create_topic(topic)
        stored = await asyncio.gather(*(client.publish(topic, f"m-{i}") for i in range(100)))
        assert sorted(s.offset for s in stored) == list(range(100))
        info = await client.topic_info(topic)
        assert info.messages == 100
        await client.close()

    run(scenario())


def test_a_receive_with_a_timeout_raises_timeout(broker):
    async def scenario():
        client = await sluice.aio.Client.connect(broker.address, ca=broker.ca)
        subscription = await client.subscribe(f"py.aio.{uuid.uuid4().hex[:8]}")
        with pytest.raises(sluice.Timeout):
            await subscription.receive(timeout=0.1)
        await client.close()

    run(scenario())


def test_async_iteration_keeps_order_and_ack_many_settles(broker):
    async def scenario():
        async with await sluice.aio.Client.connect(broker.address, ca=broker.ca) as client:
            topic = f"py.aio.{uuid.uuid4().hex[:8]}"
            await client.publish_many([(topic, f"m-{i}") for i in range(500)])
            subscription = await client.subscribe(topic, start="earliest")
            offsets = []
            async for message in subscription:
                offsets.append(message.offset)
                if len(offsets) == 500:
                    break
            assert offsets == list(range(500))
            group = f"g-{uuid.uuid4().hex[:8]}"
            consumer = await client.consume(topic, group, max_in_flight=128)
            batch, acked = [], 0
            async for delivery in consumer:
                batch.append(delivery)
                if len(batch) == 100:
                    await consumer.ack_many(batch)
                    acked, batch = acked + 100, []
                    if acked == 500:
                        break
            info = await client.group_info(group)
            assert (info.pending, info.lag) == (0, 0)

    run(scenario())


def test_receives_cut_short_by_timeouts_lose_no_message(broker):
    async def scenario():
        async with await sluice.aio.Client.connect(broker.address, ca=broker.ca) as client:
            topic = f"py.aio.{uuid.uuid4().hex[:8]}"
            await client.publish_many([(topic, f"m-{i}") for i in range(300)])
            async with await client.subscribe(topic, start="earliest") as subscription:
                got, cut_short = [], 0
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while len(got) < 300 and loop.time() < deadline:
                    # A timeout this short cancels many receives part-way:
                    # while waiting, or after the wait took messages in.
                    try:
                        message = await asyncio.wait_for(subscription.receive(), 0.0005)
                    except asyncio.TimeoutError:
                        cut_short += 1
                        continue
                    got.append(message.offset)
            assert got == list(range(300)), f"gaps or repeats after {cut_short} cancelled receives"

    run(scenario())


def test_request_reply_with_async_responders(broker):
    async def scenario():
        async with await sluice.aio.Client.connect(broker.address, ca=broker.ca) as client:
            service = f"py.aio.svc.{uuid.uuid4().hex[:8]}"
            with pytest.raises(sluice.NoResponders):
                await client.request(service, b"x", timeout=SOON)
            responder = await client.respond(service)

            async def serve():
                async for request in responder:
                    assert isinstance(request, sluice.aio.Request)
                    await request.reply(request.payload[::-1], headers={"topic": request.topic})

            serving = asyncio.create_task(serve())
            reply = await client.request(service, b"abc", timeout=SOON)
            assert (reply.payload, reply.header("topic")) == (b"cba", service)
            await responder.close()
            await asyncio.wait_for(serving, SOON)

    run(scenario())
