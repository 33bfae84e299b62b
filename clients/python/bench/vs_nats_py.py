"""Acked publish and consume throughput from Python: sluice's package
against nats-py on JetStream (nats-server 2.15), in one run, on one machine.

Run by `cargo xtask bench-python`, which builds both sides and passes the
binaries. Each figure is the median of --runs runs (min and max beside
it); each run counts what was acked inside a timed window after a
warm-up. The brokers run one at a time, each in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import nats

import sluice
import sluice.aio

BATCH = 256  # messages per publish_many / in flight / fetched
READY_LIMIT = 30.0


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, ready):
    deadline = time.monotonic() + READY_LIMIT
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {READY_LIMIT} s")
        time.sleep(0.05)


class Sluice:
    def __init__(self, binary: str, directory: Path, fsync: str):
        self.directory = directory
        config = directory / "sluice.toml"
        config.write_text(
            f"""
[server]
listen = "127.0.0.1:0"
data_dir = "{directory / 'data'}"
[storage]
fsync = "{fsync}"
[admin]
enabled = false
[plugins]
watch = false
"""
        )
        self.log = directory / "sluice.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([binary, "serve", "--config", str(config)], stdout=log, stderr=log)
        found = []

        def ready():
            m = re.search(r"sluice is listening addr=(\S+)", self.log.read_text(errors="replace"))
            if m:
                found.append(m.group(1))
            return bool(found)

        wait_for("sluice", ready)
        self.address = found[0]
        self.ca = str(directory / "data" / "tls" / "cert.pem")

    def stop(self):
        self.process.terminate()
        self.process.wait(READY_LIMIT)


class Nats:
    def __init__(self, binary: str, directory: Path):
        port = free_tcp_port()
        config = directory / "nats.conf"
        config.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{directory / "js"}" }}\n')
        self.process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"nats://127.0.0.1:{port}"

        def ready():
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False

        wait_for("nats-server", ready)

    def stop(self):
        self.process.terminate()
        self.process.wait(READY_LIMIT)


class Window:
    """A warm-up, then a steady window: counts what lands inside it."""

    def __init__(self, warmup: float, duration: float):
        now = time.monotonic()
        self.open = now + warmup
        self.close = self.open + duration
        self.counted = 0
        self.last = self.open

    def done(self) -> bool:
        return time.monotonic() >= self.close

    def add(self, n: int):
        now = time.monotonic()
        if self.open <= now < self.close:
            self.counted += n
            self.last = now

    def rate(self) -> float:
        # A source that ran dry inside the window counts until its last message.
        end = self.close if time.monotonic() >= self.close else self.last
        return self.counted / max(end - self.open, 1e-9)


# --- sluice ---------------------------------------------------------------


def sluice_publish(server: Sluice, size: int, timing: tuple) -> float:
    window = Window(*timing)
    with sluice.Client.connect(server.address, ca=server.ca) as client:
        topic = f"bench.{uuid.uuid4().hex[:8]}"
        batch = [(topic, b"x" * size)] * BATCH
        while not window.done():
            client.publish_many(batch)
            window.add(BATCH)
    return window.rate()


def sluice_publish_each(server: Sluice, size: int, timing: tuple) -> float:
    window = Window(*timing)
    with sluice.Client.connect(server.address, ca=server.ca) as client:
        topic = f"bench.{uuid.uuid4().hex[:8]}"
        body = b"x" * size
        while not window.done():
            client.publish(topic, body)
            window.add(1)
    return window.rate()


def sluice_consume(server: Sluice, size: int, timing: tuple, *, preload: int) -> float:
    async def run():
        client = await sluice.aio.Client.connect(server.address, ca=server.ca)
        topic = f"bench.{uuid.uuid4().hex[:8]}"
        body = b"x" * size
        for _ in range(preload // BATCH):
            await client.publish_many([(topic, body)] * BATCH)
        consumer = await client.consume(topic, f"g-{uuid.uuid4().hex[:8]}", max_in_flight=BATCH, start="earliest")
        window = Window(*timing)
        while not window.done():
            batch = []
            while len(batch) < BATCH // 2:
                try:
                    delivery = await consumer.receive(timeout=1)
                except sluice.Timeout:
                    delivery = None  # ran dry
                if delivery is None:
                    break
                batch.append(delivery)
            if not batch:
                break
            await consumer.ack_many(batch)
            window.add(len(batch))
        consumer.close()
        await client.close()
        return window.rate()

    return asyncio.run(run())


# --- nats-py ---------------------------------------------------------------


def nats_publish(server: Nats, size: int, timing: tuple) -> float:
    window = Window(*timing)
    async def run():
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        subject = f"bench.{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=subject.replace(".", "_"), subjects=[subject])
        body = b"x" * size
        while not window.done():
            await asyncio.gather(*(js.publish(subject, body) for _ in range(BATCH)))
            window.add(BATCH)
        await nc.close()

    asyncio.run(run())
    return window.rate()


def nats_publish_each(server: Nats, size: int, timing: tuple) -> float:
    window = Window(*timing)

    async def run():
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        subject = f"bench.{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=subject.replace(".", "_"), subjects=[subject])
        body = b"x" * size
        while not window.done():
            await js.publish(subject, body)
            window.add(1)
        await nc.close()

    asyncio.run(run())
    return window.rate()


def nats_consume(server: Nats, size: int, timing: tuple, *, preload: int) -> float:
    async def run():
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        subject = f"bench.{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=subject.replace(".", "_"), subjects=[subject])
        body = b"x" * size
        for _ in range(preload // BATCH):
            await asyncio.gather(*(js.publish(subject, body) for _ in range(BATCH)))
        sub = await js.pull_subscribe(subject, durable="bench")
        window = Window(*timing)
        while not window.done():
            try:
                messages = await sub.fetch(BATCH, timeout=1)
            except nats.errors.TimeoutError:
                break
            for m in messages:
                await m.ack()
            window.add(len(messages))
        await nc.close()
        return window.rate()

    return asyncio.run(run())


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(rate: float) -> str:
    return f"{rate / 1000:.1f}k" if rate >= 1000 else f"{rate:.0f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sluice", required=True)
    parser.add_argument("--nats-server", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--fsync", default="always")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    timing = (args.warmup, args.duration)
    # Preloads: enough for the warm-up and the window at the rates measured
    # here, each side its own (nats-py preloads at a tenth of the speed).
    scenarios = [
        # (what, payload bytes, sluice's fsync (None: --fsync), sluice side, NATS side)
        ("acked publish, 128 B (publish_many / gathered js.publish)", 128, None, sluice_publish, nats_publish),
        ("acked publish, 1 KiB (publish_many / gathered js.publish)", 1024, None, sluice_publish, nats_publish),
        ("acked publish, 128 B, one at a time", 128, None, sluice_publish_each, nats_publish_each),
        ("acked publish, 128 B, one at a time, fsync=interval", 128, "interval", sluice_publish_each, nats_publish_each),
        ("acked consume, 128 B", 128, None, partial(sluice_consume, preload=600_000), partial(nats_consume, preload=150_000)),
        ("acked consume, 1 KiB", 1024, None, partial(sluice_consume, preload=400_000), partial(nats_consume, preload=120_000)),
    ]
    rows = []
    for label, size, fsync, on_sluice, on_nats in scenarios:
        sluice_runs, nats_runs = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as d:
                server = Sluice(args.sluice, Path(d), fsync or args.fsync)
                try:
                    sluice_runs.append(on_sluice(server, size, timing))
                finally:
                    server.stop()
            with tempfile.TemporaryDirectory() as d:
                server = Nats(args.nats_server, Path(d))
                try:
                    nats_runs.append(on_nats(server, size, timing))
                finally:
                    server.stop()
            print(f"{label}: sluice {fmt(sluice_runs[-1])}/s, nats-py {fmt(nats_runs[-1])}/s", file=sys.stderr)
        s, n = summary(sluice_runs), summary(nats_runs)
        rows.append({"scenario": label, "sluice": s, "nats": n, "ratio": s["median"] / n["median"]})

    lines = [
        "| scenario | sluice (Python) | nats-py on JetStream | ratio |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        s, n = row["sluice"], row["nats"]
        lines.append(
            f"| {row['scenario']} | {fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])}) msg/s "
            f"| {fmt(n['median'])} ({fmt(n['min'])}–{fmt(n['max'])}) msg/s | {row['ratio']:.2f}× |"
        )
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(table + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
