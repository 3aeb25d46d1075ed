"""Where the S3 vault is, read from ``[vault]`` in gateway.toml (no S3 client needed to hold it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class S3VaultSettings:
    """Where the S3 vault is: ``[vault] url = "s3://bucket"`` and its endpoint."""

    bucket: str
    endpoint: str
    """The S3 API's URL (``https://s3.hospital.kz``)."""
    credentials_file: Path
    """A JSON file ``{"access_key": ..., "secret_key": ...}``, mode 0600."""
    retention_days: int
    """How long each object is locked after it is written (the retention policy)."""
    region: str = "us-east-1"
    ca_file: Path | None = None
    """The CA bundle of an https endpoint under a private CA (default: the system's)."""
