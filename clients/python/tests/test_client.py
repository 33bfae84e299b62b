"""The blocking API against a real broker."""

from __future__ import annotations

import datetime
import threading
import time
import uuid

import pytest

import sluice

# Bounds on every wait (seconds).
SOON = 10.0


def receive_n(source, n: int) -> list:
    got = []
    for _ in range(n):
        got.append(source.receive(timeout=SOON))
        assert got[-1] is not None, f"ended after {len(got) - 1} of {n}"
    return got


def test_publish_then_subscribe_replays_in_order_with_keys_headers_and_ids(client, topic):
    first = client.publish(topic, b"one", key=b"k1", headers={"region": "eu"}, message_id="m-1")
    assert (first.topic, first.offset, first.duplicate) == (topic, 0, False)
    assert [(p.topic, p.offset) for p in first.routed] == [(topic, 0)]
    assert client.publish(topic, "two").offset == 1
    again = client.publish(topic, b"one", message_id="m-1")
    assert (again.offset, again.duplicate) == (0, True), "the same id is stored once"

    with client.subscribe(topic, start="earliest") as subscription:
        one, two = receive_n(subscription, 2)
    assert (one.offset, one.payload, one.key, one.message_id) == (0, b"one", b"k1", "m-1")
    assert one.headers == [("region", "eu")] and one.header("region") == "eu"
    assert (two.offset, two.text(), two.key) == (1, "two", None)
    assert one.timestamp_ms <= two.timestamp_ms


def test_delayed_messages_wait_until_due_and_expired_ones_are_skipped_live(client, topic):
    # Milliseconds, as the broker counts them (it truncates).
    published = int(time.time() * 1000)
    later = client.publish(topic, b"later", delay=5.0)
    assert later.deliver_at_ms is not None and later.deliver_at_ms >= published + 5000
    at = client.publish(
        topic, b"at", deliver_at=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=4.0)
    )
    assert at.deliver_at_ms is not None
    many = client.publish_many([{"topic": topic, "payload": b"many", "delay": 3.0}])
    assert many[0].deliver_at_ms is not None
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=10)
    expired = client.publish(topic, b"expired", deliver_at=past, ttl=5.0)
    assert (expired.offset, expired.deliver_at_ms) == (0, None), "due already: stored at once"
    assert client.topic_info(topic).waiting == 3
    with client.subscribe(topic, start="latest") as live:
        got = receive_n(live, 3)
    assert [m.payload for m in got] == [b"many", b"at", b"later"], "in due order, the expired one skipped"
    assert all(m.timestamp_ms >= published for m in got)
    with client.subscribe(topic, start="earliest") as replay:
        first = receive_n(replay, 1)[0]
    assert (first.payload, first.header("sluice-expired")) == (b"expired", "true")
    with pytest.raises(ValueError):
        client.publish(topic, b"x", delay=1.0, deliver_at=past)


def test_request_reply_round_trip_errors_timeouts_and_a_queue_group(client):
    service = f"py.svc.{uuid.uuid4().hex[:8]}"
    with pytest.raises(sluice.NoResponders):
        client.request(f"{service}.echo", b"anyone?", timeout=SOON)

    def serve(responder, name):
        for request in responder:
            if request.payload == b"fail":
                request.reply_error("cannot do that")
            elif request.payload != b"ignore":
                reply = request.payload.upper() + b" " + request.header("k").encode()
                request.reply(reply, headers={"x-by": name})

    with client.respond(f"{service}.>") as responder:
        thread = threading.Thread(target=serve, args=(responder, "py"), daemon=True)
        thread.start()
        reply = client.request(f"{service}.echo", b"hi", timeout=SOON, headers={"k": "v"})
        assert (reply.payload, reply.header("x-by")) == (b"HI v", "py")
        assert reply.text() == "HI v"
        with pytest.raises(sluice.ResponderError) as failed:
            client.request(f"{service}.echo", b"fail", timeout=SOON, headers={"k": "v"})
        assert "cannot do that" in str(failed.value)
        with pytest.raises(sluice.RequestTimeout):
            client.request(f"{service}.echo", b"ignore", timeout=0.3)
    thread.join(timeout=SOON)
    assert not thread.is_alive(), "closing the responder ends its iteration"
    with pytest.raises(sluice.NoSuchTopic):
        client.topic_info(f"{service}.echo")  # requests are never stored

    # A queue group: each request answered once, by its members in turn.
    members = [client.respond(f"{service}.jobs", group="workers") for _ in range(2)]
    threads = [threading.Thread(target=serve, args=(m, f"w{i}"), daemon=True) for i, m in enumerate(members)]
    for t in threads:
        t.start()
    answered_by = {client.request(f"{service}.jobs", b"x", timeout=SOON, headers={"k": "j"}).header("x-by") for _ in range(6)}
    assert answered_by == {"w0", "w1"}
    for m in members:
        m.close()
    with pytest.raises(sluice.NoSuchTopic):
        client.topic_info(f"{service}.jobs")


def test_trace_context_goes_with_the_message(client, topic):
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    client.publish(topic, b"traced", headers={"traceparent": parent, "tracestate": "v=1"})
    client.publish(topic, b"plain")
    with client.subscribe(topic, start="earliest") as subscription:
        traced, plain = receive_n(subscription, 2)
    # This broker exports no spans: the context arrives as it was sent.
    assert traced.traceparent == parent
    assert traced.header("tracestate") == "v=1"
    assert plain.traceparent is None


def test_a_live_subscription_gets_what_is_published_after_it(client, topic):
    client.publish(topic, b"before")
    subscription = client.subscribe(topic)  # "latest" by default
    client.ping()  # the subscription is in place once a later request is answered
    client.publish(topic, b"after")
    assert subscription.receive(timeout=SOON).payload == b"after"
    subscription.close()
    assert subscription.receive(timeout=SOON) is None, "a closed subscription ends"


def test_publish_many_pipelines_and_answers_in_order(client, topic):
    messages = [(topic, f"m-{i}".encode()) for i in range(200)]
    messages.append({"topic": topic, "payload": b"last", "key": "k", "headers": [("h", "v")]})
    stored = client.publish_many(messages)
    assert [s.offset for s in stored] == list(range(201))
    assert client.publish_many([]) == []
    info = client.topic_info(topic)
    assert (info.start_offset, info.next_offset, info.messages) == (0, 201, 201)


def test_replay_from_an_offset_and_from_a_time(client, topic):
    for i in range(5):
        client.publish(topic, f"early-{i}")
    with client.subscribe(topic, start=4) as last_early:
        stored_at = last_early.receive(timeout=SOON).timestamp_ms
    # Timestamps are milliseconds: wait for the clock to pass the last
    # early message's, so that a time between them exists.
    marker = datetime.datetime.fromtimestamp((stored_at + 1) / 1000, datetime.timezone.utc)
    deadline = time.monotonic() + SOON
    while time.time() * 1000 < stored_at + 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    client.publish(topic, "late")

    with client.subscribe(topic, start=3) as from_offset:
        assert [m.text() for m in receive_n(from_offset, 3)] == ["early-3", "early-4", "late"]
    with client.subscribe(topic, start=marker) as from_time:
        assert from_time.receive(timeout=SOON).text() == "late"


def test_a_pattern_subscription_iterates_over_every_matching_topic(client):
    prefix = f"py.{uuid.uuid4().hex[:8]}"
    for region in ("eu", "us"):
        client.publish(f"{prefix}.{region}", region)
    got = []
    with client.subscribe(f"{prefix}.>", start="earliest") as subscription:
        for message in subscription:
            got.append(message.topic)
            if len(got) == 2:
                break
    assert sorted(got) == [f"{prefix}.eu", f"{prefix}.us"]


def test_a_group_shares_work_acks_redelivers_nacks_and_dead_letters_rejects(client, topic):
    group = f"workers-{uuid.uuid4().hex[:8]}"
    client.publish_many([(topic, f"job-{i}") for i in range(3)])
    with client.consume(topic, group, max_in_flight=8, backoff=[0.05]) as consumer:
        jobs = {d.text(): d for d in receive_n(consumer, 3)}
        assert all(d.attempt == 1 for d in jobs.values())
        jobs["job-0"].ack()
        jobs["job-1"].nack(delay=0)
        jobs["job-2"].reject("cannot parse")
        again = consumer.receive(timeout=SOON)
        assert (again.text(), again.attempt) == ("job-1", 2), "a nack comes back as the next attempt"
        with pytest.raises(sluice.StaleSettle):
            jobs["job-1"].ack()  # the first attempt's settlement is stale now
        again.in_progress()
        again.ack()
        with pytest.raises(sluice.UnknownDelivery):
            again.ack()  # settled already
    with client.subscribe(f"dlq.{topic}", start="earliest") as dead:
        letter = dead.receive(timeout=SOON)
    assert letter.payload == b"job-2"
    info = client.group_info(group)
    assert (info.name, info.pending, info.lag, info.dead_lettered) == (group, 0, 0, 1)
    assert group in [g.name for g in client.list_groups()]


def test_topic_admin(client):
    name = f"py.admin.{uuid.uuid4().hex[:8]}"
    info = client.create_topic(name, max_messages=10, max_age=3600)
    assert (info.name, info.max_messages, info.max_age) == (name, 10, 3600.0)
    with pytest.raises(sluice.TopicExists) as exists:
        client.create_topic(name)
    assert exists.value.code == "topic_exists"
    assert name in [t.name for t in client.list_topics()]
    client.delete_topic(name)
    with pytest.raises(sluice.NoSuchTopic) as missing:
        client.topic_info(name)
    assert missing.value.code == "topic_not_found" and name in missing.value.message
    assert isinstance(missing.value, sluice.SluiceError) and isinstance(missing.value, LookupError)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda c: c.publish("orders", 42), TypeError),
        (lambda c: c.publish("orders", b"x", headers=7), TypeError),
        (lambda c: c.publish("orders", b"x", message_id=""), ValueError),
        (lambda c: c.subscribe("orders", start="middle"), ValueError),
        (lambda c: c.subscribe("orders", start=-1), ValueError),
        (lambda c: c.subscribe("orders", start=True), TypeError),
        (lambda c: c.publish_many([42]), TypeError),
        (lambda c: c.publish_many([{"payload": b"x"}]), ValueError),
        (lambda c: c.consume("orders", "g", max_in_flight=0), ValueError),
        (lambda c: c.consume("orders", "g", ack_wait=-1), ValueError),
        (lambda c: c.create_topic("t", max_age=-5), ValueError),
    ],
)
def test_bad_arguments_raise_clear_exceptions_before_anything_is_sent(client, call, error):
    with pytest.raises(error) as raised:
        call(client)
    assert not isinstance(raised.value, sluice.SluiceError), "refused by the client, not the broker"
    assert client.ping() >= 0, "the client still works"


def test_names_the_broker_refuses_raise_their_own_exceptions(client):
    with pytest.raises(sluice.InvalidTopic) as bad_topic:
        client.publish("bad topic!", b"x")
    assert bad_topic.value.code == "invalid_topic" and bad_topic.value.number == 100
    with pytest.raises(sluice.InvalidPattern):
        client.subscribe("orders.>.eu")
    with pytest.raises(sluice.InvalidGroup):
        client.consume("orders", "bad group!")


def test_connect_checks_its_options(broker):
    with pytest.raises(ValueError, match="ca= is required"):
        sluice.Client.connect(broker.address)
    with pytest.raises(ValueError, match="not both"):
        sluice.Client.connect(broker.address, ca=broker.ca, insecure=True)
    with pytest.raises(ValueError, match="go together"):
        sluice.Client.connect(broker.address, ca=broker.ca, cert="c.pem")
    with pytest.raises(sluice.ConfigError):
        sluice.Client.connect(broker.address, ca="/nonexistent/ca.pem")
    with pytest.raises(TypeError):
        sluice.Client.connect(4433, ca=broker.ca)
    with sluice.Client.connect([broker.address], ca=broker.ca) as listed:
        assert listed.server.startswith("sluice")


def test_a_closed_client_says_so(broker):
    client = broker.connect()
    client.close()
    with pytest.raises(sluice.Closed):
        client.publish("orders", b"x")


def test_a_blocking_wait_releases_the_gil(client, topic):
    import threading

    subscription = client.subscribe(topic)
    inside = threading.Event()
    outcome = []

    def wait_for_nothing():
        inside.set()
        try:
            subscription.receive(timeout=0.5)
        except sluice.Timeout:
            outcome.append("timed out")

    waiter = threading.Thread(target=wait_for_nothing)
    waiter.start()
    assert inside.wait(SOON)
    # While the other thread waits on the network, this one runs Python:
    # had the wait held the GIL, this loop would not turn until it ended.
    turns = 0
    while waiter.is_alive():
        turns += 1
    waiter.join(SOON)
    assert outcome == ["timed out"]
    assert turns > 10_000, f"only {turns} turns while the other thread waited"
