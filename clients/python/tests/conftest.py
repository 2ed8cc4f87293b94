"""A real Delta for the tests: `delta up` (control plane on SQLite and one
node) on a free loopback port, with hello-agent deployed.

`DELTA_BIN` names the binary and `DELTA_GUESTS` the built guests
(default: the workspace's target/debug/delta and target/guests, as
`cargo xtask clients` leaves them).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str
    state: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    binary = Path(os.environ.get("DELTA_BIN", ROOT / "target/debug/delta"))
    guests = Path(os.environ.get("DELTA_GUESTS", ROOT / "target/guests"))
    with tempfile.TemporaryDirectory() as work:
        examples = Path(work, "examples")
        examples.mkdir()
        (examples / "hello-agent.wasm").symlink_to(guests / "hello-agent.wasm")
        state = Path(work, "state")
        listen = f"127.0.0.1:{_free_port()}"
        log = Path(work, "up.log").open("w+")
        process = subprocess.Popen(
            [
                binary,
                "up",
                "--listen",
                listen,
                "--state-dir",
                state,
                "--examples",
                examples,
                "--no-rate-limits",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                text = Path(log.name).read_text()
                if "Stop with Ctrl-C." in text:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"delta up did not start:\n{text}")
                time.sleep(0.2)
            match = re.search(r"API\s+(http://\S+)", text)
            url = match.group(1) if match else f"http://{listen}"
            key = (state / "admin-api-key").read_text().strip()
            yield Server(url=url, api_key=key, state=state)
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()
