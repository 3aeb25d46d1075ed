"""RFC 3161 time-stamping: the gateway's own authority, a client for another, an HTTP front.

Everything that time-stamps (the ledger's checkpoints, the export, the daemon's schedule)
takes a ``Timestamper``; ``GatewayDataDir.configured_timestamper`` gives the configured one.
"""

from __future__ import annotations

from gateway.timestamping.authority import DEFAULT_POLICY_OID, TimeStampAuthority
from gateway.timestamping.client import TsaClient
from gateway.timestamping.request import QUERY_TYPE, REPLY_TYPE, build_request
from gateway.timestamping.server import TsaHttpServer
from gateway.timestamping.timestamper import Timestamper

__all__ = [
    "DEFAULT_POLICY_OID",
    "QUERY_TYPE",
    "REPLY_TYPE",
    "TimeStampAuthority",
    "Timestamper",
    "TsaClient",
    "TsaHttpServer",
    "build_request",
]
