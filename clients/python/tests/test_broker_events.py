"""Authentication (tokens and client certificates), and a broker restart
under a subscription."""

from __future__ import annotations

import subprocess

import pytest

import sluice
from conftest import run_sluice

SOON = 10.0
SECRET = "py-orders-secret-0123456789"


def test_clients_without_a_valid_token_are_refused_and_rights_are_enforced(fresh_broker, tmp_path):
    token_hash = run_sluice("token", "hash", SECRET).strip().splitlines()[-1]
    broker = fresh_broker(
        f"""
[auth]
mode = "required"
[[auth.principal]]
name = "orders"
token_hash = '{token_hash}'
publish = ["orders.>"]
subscribe = ["orders.>"]
"""
    )
    with pytest.raises(sluice.Unauthorized) as none:
        broker.connect(reconnect_timeout=0)
    assert none.value.code == "unauthorized"
    with pytest.raises(sluice.Unauthorized):
        broker.connect(token="not-the-secret", reconnect_timeout=0)
    with broker.connect(token=SECRET) as client:
        assert client.publish("orders.eu", b"o-1").offset == 0
        with pytest.raises(sluice.Forbidden) as forbidden:
            client.publish("billing.eu", b"b-1")
        assert forbidden.value.code == "forbidden"


def test_a_subscription_resumes_after_a_broker_restart_without_gaps_or_repeats(fresh_broker):
    broker = fresh_broker()
    topic = "orders.restart"
    with broker.connect(reconnect_timeout=30) as client:
        client.create_topic(topic)
        client.publish_many([(topic, f"before-{i}") for i in range(3)])
        subscription = client.subscribe(topic, start="earliest")
        got = [subscription.receive(timeout=SOON).text() for _ in range(3)]

        broker.stop()
        broker.start()
        # The client reconnects by itself; this publish waits for it.
        client.publish_many([(topic, f"after-{i}") for i in range(3)])
        got += [subscription.receive(timeout=SOON).text() for _ in range(3)]
        subscription.close()
    assert got == [f"before-{i}" for i in range(3)] + [f"after-{i}" for i in range(3)]


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def test_a_client_certificate_names_the_principal(fresh_broker, tmp_path):
    # A CA and a client certificate for principal "orders" (subject CN).
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=py-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=tmp_path)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=orders", cwd=tmp_path)
    (tmp_path / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "client.pem", "-days", "2", "-extfile", "client.ext", cwd=tmp_path)
    broker = fresh_broker(
        f"""
[auth]
mode = "required"
client_ca = "{tmp_path / 'ca.pem'}"
[[auth.principal]]
name = "orders"
publish = ["orders.>"]
"""
    )
    cert, key = str(tmp_path / "client.pem"), str(tmp_path / "client.key")
    with broker.connect(cert=cert, key=key) as client:
        assert client.publish("orders.eu", b"o-1").offset == 0
        with pytest.raises(sluice.Forbidden):
            client.publish("billing.eu", b"b-1")
    with pytest.raises(sluice.Unauthorized):
        broker.connect(reconnect_timeout=0)
