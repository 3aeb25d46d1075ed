"""Gateway ingest MB/s against raw MQTT throughput of the same payloads through the same broker.

A real ``gateway run`` process behind the demo's mosquitto (TLS on loopback). Each round a
badge (its own login) sends one incident: signed alert, signed record, then sealed segments
of about 1 MB in 256 KiB chunks, at most 16 messages unacknowledged; the round ends when its
incident receipt arrives, which the gateway sends only once every segment is checked,
fsynced into the vault, recorded in the database and the ledger, and receipted. The limit is
the same payloads, in the same order, from the same publisher code through the same broker
listener to a subscriber process that only counts bytes (QoS 1 on both sides). Rounds
alternate so both see the same machine, with a pause after each ingest round so the
gateway's ledger checkpoint at the incident's close does not run during a raw round; the
ratio is ingest MB/s over raw MB/s.

A second figure, the floor, sends the same payloads to the same subscriber, which this time
also hashes every byte twice, writes it and fsyncs it a segment at a time
(``bench.durable_floor``): the least any intake must do before a receipt. Its ratio to raw
is the most any intake could reach on this machine (decision 1504).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.durable_floor import FLOOR_WORK
from bench.fleet import incident_upload
from bench.loopback import BadgeLink, BenchHospital, RawTransfer
from bench.report import Figure

SEGMENTS = 16
PLAINTEXT_BYTES = 1_000_000
"""About 2 s of 1080p30 H.264; sealed, a little more."""
CHUNK_BYTES = 256 * 1024
ROUNDS = 5
SETTLE_S = 0.3
"""After an incident receipt: time for the gateway's checkpoint, which follows it, to end
before the next raw transfer is timed (``bench seal-latency`` waits as long)."""


def run(rounds: int = ROUNDS, segments: int = SEGMENTS) -> list[Figure]:
    """Alternate raw and ingest rounds (after one warm-up of each) and report the ratio."""
    with tempfile.TemporaryDirectory(prefix="medbadge-bench-ingest-") as temporary:
        hospital = BenchHospital(Path(temporary), rounds + 1)
        links: list[BadgeLink] = []
        raw: RawTransfer | None = None
        try:
            hospital.start()
            raw = RawTransfer(hospital)
            ingest_s = raw_s = floor_s = 0.0
            carried = 0
            for number, bundle in enumerate(hospital.bundles()):
                upload = incident_upload(
                    bundle,
                    f"20260101t000000-{number:06x}",
                    segments=segments,
                    plaintext_bytes=PLAINTEXT_BYTES,
                    chunk_bytes=CHUNK_BYTES,
                )
                payloads = [payload for _, payload in upload.messages]
                raw_round = raw.send(payloads)
                floor_round = raw.send(payloads, durable=True)
                link = BadgeLink(bundle, hospital.broker_dir / "ca.crt")
                links.append(link)
                start = link.publisher.publish_all(upload.messages)
                done = link.wait_receipt("incident", upload.incident_id)
                time.sleep(SETTLE_S)
                if number == 0:
                    continue  # warm-up
                ingest_s += (done - start) / 1e9
                raw_s += raw_round
                floor_s += floor_round
                carried += sum(len(payload) for payload in payloads)
        finally:
            for link in links:
                link.close()
            if raw is not None:
                raw.close()
            hospital.stop()
    megabytes = carried / 1e6
    ingest_rate, raw_rate = megabytes / ingest_s, megabytes / raw_s
    floor_rate = megabytes / floor_s
    return [
        Figure(
            name="ingest",
            value=ingest_rate,
            unit="MB/s",
            limit_value=raw_rate,
            ratio=ingest_rate / raw_rate,
            goal=">= 0.8 (ingest / raw MQTT)",
            note=(
                f"{rounds} incidents of {segments} sealed ~1 MB segments in 256 KiB chunks, "
                "gateway run over TLS on loopback, timed to the incident receipt; "
                f"{ingest_rate / floor_rate:.3f} of the floor"
            ),
        ),
        Figure(
            name="ingest-floor",
            value=floor_rate,
            unit="MB/s",
            limit_value=raw_rate,
            ratio=floor_rate / raw_rate,
            goal="none: the most any intake could reach here",
            note=f"the same payloads to the raw subscriber, which {FLOOR_WORK}",
        ),
    ]
