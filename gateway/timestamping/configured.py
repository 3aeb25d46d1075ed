"""The time-stamp authority the gateway uses for its checkpoints: its own, or an external one."""

from __future__ import annotations

from collections.abc import Callable

from cryptography import x509

from gateway.config import TimestampSettings
from gateway.datadir import GatewayDataDir
from gateway.errors import GatewayConfigError
from gateway.timestamping.authority import TsaClient


def configured_timestamper(
    data_dir: GatewayDataDir, settings: TimestampSettings
) -> Callable[[bytes], bytes]:
    """``stamp(digest) -> TimeStampResp`` of the configured TSA; every token is verified."""
    if not settings.tsa_url:
        return data_dir.timestamper().stamp
    if settings.tsa_ca_file is None:
        raise GatewayConfigError("timestamps.tsa_ca_file is required with timestamps.tsa_url")
    try:
        trusted = x509.load_pem_x509_certificates(settings.tsa_ca_file.read_bytes())
    except (OSError, ValueError) as error:
        raise GatewayConfigError(
            f"timestamps.tsa_ca_file {settings.tsa_ca_file} is not readable PEM: {error}"
        ) from None
    return TsaClient(settings.tsa_url, trusted).stamp
