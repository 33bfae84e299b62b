"""README.md's Python example, run as written against a broker with
examples/sluice.toml's order pipeline: each `print(...)  # → TEXT` line
must print a line containing TEXT."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXPECTED = re.compile(r"print\(.*#\s*→\s*(.+)$")


def readme_python() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one python example under 'From Python'"
    return blocks[0]


def example_config() -> str:
    """examples/sluice.toml with the test's own port, data and plugin paths."""
    dist = ROOT / "plugins" / "dist"
    if not (dist / "route_by_header.wasm").exists():
        pytest.fail(f"{dist} has no components: run `cargo xtask plugins` (cargo xtask test does)")
    text = (ROOT / "examples" / "sluice.toml").read_text()
    for old, new in [
        ('listen = "127.0.0.1:4433"', 'listen = "@LISTEN@"'),
        ('data_dir = "./sluice-data"', 'data_dir = "@DATA@"'),
        ('listen = "127.0.0.1:9464"', 'listen = "127.0.0.1:0"'),
        ('path = "../plugins/dist/', f'path = "{dist}/'),
    ]:
        assert old in text, f"examples/sluice.toml no longer has {old!r}"
        text = text.replace(old, new)
    return text


def test_the_readme_python_order_pipeline_runs_as_written(fresh_broker):
    broker = fresh_broker(template=example_config())
    code = readme_python()
    assert "127.0.0.1:4433" in code and "sluice-data/tls/cert.pem" in code
    code = code.replace("127.0.0.1:4433", broker.address).replace("sluice-data/tls/cert.pem", broker.ca)
    expected = [m.group(1).strip() for line in code.splitlines() if (m := EXPECTED.search(line))]
    assert expected, "the example says what it prints"

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (From Python)", "exec"), {})
    printed = out.getvalue().splitlines()
    assert len(printed) == len(expected), printed
    for line, want in zip(printed, expected):
        assert want in line, f"{line!r} does not show {want!r}"
