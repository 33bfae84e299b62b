"""Fixtures: a real sluice broker (the `sluice` binary `cargo xtask test`
names in SLUICE_BIN), started on 127.0.0.1 on a free port with its data in
a temporary directory."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import sluice

# How long a broker may take to start or stop.
START_LIMIT = 30.0
LISTENING = re.compile(r"sluice is listening addr=(\S+)")
# A broker's config: @LISTEN@ and @DATA@ are filled in at each start.
DEFAULT_CONFIG = """
[server]
listen = "@LISTEN@"
data_dir = "@DATA@"
[admin]
enabled = false
[plugins]
watch = false
"""


def sluice_binary() -> str:
    binary = os.environ.get("SLUICE_BIN")
    if not binary or not Path(binary).is_file():
        pytest.fail("SLUICE_BIN must name the sluice binary (cargo xtask test sets it)")
    return binary


def run_sluice(*args: str) -> str:
    """Runs the sluice command line; its standard output."""
    done = subprocess.run([sluice_binary(), *args], capture_output=True, text=True, timeout=START_LIMIT, check=True)
    return done.stdout


class Broker:
    """A `sluice serve` child process."""

    def __init__(self, directory: Path, extra_toml: str = "", template: str = ""):
        self.directory = directory
        self.template = template or DEFAULT_CONFIG + extra_toml
        self.listen = "127.0.0.1:0"
        self.process: subprocess.Popen | None = None
        self.address = ""
        self.log = directory / "broker.log"

    @property
    def ca(self) -> str:
        return str(self.directory / "data" / "tls" / "cert.pem")

    def start(self) -> "Broker":
        config = self.directory / "sluice.toml"
        config.write_text(
            self.template.replace("@LISTEN@", self.listen).replace("@DATA@", str(self.directory / "data"))
        )
        offset = self.log.stat().st_size if self.log.exists() else 0
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [sluice_binary(), "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            found = LISTENING.search(text)
            if found:
                self.address = found.group(1)
                # A restart listens where the first start did.
                self.listen = self.address
                return self
            if self.process.poll() is not None:
                pytest.fail(f"the broker exited with {self.process.returncode}:\n{text}")
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"the broker did not start within {START_LIMIT} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(START_LIMIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def connect(self, **options) -> sluice.Client:
        return sluice.Client.connect(self.address, ca=self.ca, **options)



@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    broker = Broker(tmp_path_factory.mktemp("broker")).start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_broker(tmp_path):
    """A broker of the test's own (for tests that stop it, or configure it)."""
    brokers = []

    def start(extra_toml: str = "", template: str = "") -> Broker:
        broker = Broker(tmp_path / f"broker-{len(brokers)}", extra_toml, template)
        broker.directory.mkdir()
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def client(broker):
    with broker.connect() as client:
        yield client


@pytest.fixture
def topic(client):
    """A new topic's name, created."""
    name = f"py.{uuid.uuid4().hex[:12]}"
    client.create_topic(name)
    return name
