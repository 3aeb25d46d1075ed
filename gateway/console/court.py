"""Export for court from the console: the evidence package of ``gateway.export``, recorded.

The package itself (the clip as recorded, its MP4 remux, headers, receipts, proofs,
checkpoint, time-stamps and VERIFY.txt) is built, recorded in the custody log and verified by
``gateway.export``; this module hands it the incident, the custodian and the reason, and
gives the console the finished zip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from evidence.errors import EvidenceError
from gateway.errors import ConsoleError, GatewayError
from gateway.export.export import ExportRequest, export_incident
from gateway.storage.incident_index import IncidentSummary

if TYPE_CHECKING:
    from gateway.console.core import Console


def export_for_court(
    console: Console, username: str, summary: IncidentSummary, justification: str
) -> tuple[str, bytes]:
    """Build the incident's court package as ``username``; return its file name and bytes.

    The export records itself (with the package's digests) in the custody log and verifies
    the package before it returns; ConsoleError says why nothing was made.
    """
    with tempfile.TemporaryDirectory(prefix="medbadge-export-") as scratch:
        target = Path(scratch) / f"{summary.badge_id}-{summary.incident_id}.zip"
        request = ExportRequest(
            incident_id=summary.incident_id,
            output=target,
            actor=username,
            justification=justification,
            badge_id=summary.badge_id,
            custodian_passphrase=console.options.custodian_passphrase,
        )
        try:
            export_incident(console.data_dir, request)
        except (GatewayError, EvidenceError) as error:
            raise ConsoleError(
                f"the export of incident {summary.incident_id} failed: {error}"
            ) from None
        return target.name, target.read_bytes()
