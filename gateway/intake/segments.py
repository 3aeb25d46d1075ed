"""Storing a reassembled segment: check it whole, chain it, vault first, then its row.

The order is what makes a receipt trustworthy: the bytes are checked (SHA-256 against what
the chunks declared, the sealed-segment format, the badge's signature, the seq), then linked
to the stored segments either side of it, then put in the vault and fsynced (``accept``),
and only then given a row and ledger entry in a database transaction (``record``), which
re-checks for a duplicate and the links in case another intake process stored a neighbour
meanwhile. The caller may record the receipt in that same transaction; it is sent after.

Each byte is read once: the reassembly streams the chunks through an
``evidence.segment.SegmentStream`` as they are written when they come in order, else this
module streams the file from disk. The stream gives the SHA-256 of the whole segment (the
vault name, the check against what the chunks declared, and the ledger's), the ciphertext's
SHA-256 (the one the badge signed) and the header and signature; the ciphertext is never
held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evidence.chain import check_chain
from evidence.segment import CheckedSegmentBytes, SegmentHeader, SegmentStream
from gateway.errors import Reason, RejectedMessageError
from gateway.intake.catalogue import Cataloguer
from gateway.intake.checks import opened, same_badge, within_int64
from gateway.intake.clock import BadgeClocks
from gateway.intake.reassembly import PartialSegment
from gateway.storage.badges import EnrolledBadge
from gateway.storage.catalogue import CaptureTime, StoredSegment
from gateway.storage.vault import Vault

_BLOCK = 1 << 20


@dataclass(frozen=True)
class AcceptedSegment:
    """A reassembled segment that passed every check and is in the vault, awaiting its row."""

    segment: CheckedSegmentBytes
    partial: PartialSegment
    neighbours: tuple[bytes, ...]
    """The header bytes of the stored neighbours it was found to link to."""


class SegmentStore:
    """Accepts reassembled segments into the vault and the catalogue."""

    def __init__(self, cataloguer: Cataloguer, vault: Vault, clocks: BadgeClocks) -> None:
        """Store into ``vault`` and, through ``cataloguer``, the catalogue; date segments with
        ``clocks``."""
        self._cataloguer = cataloguer
        self._catalogue = cataloguer.catalogue
        self._vault = vault
        self._clocks = clocks

    def store(
        self, badge: EnrolledBadge, partial: PartialSegment, received_wall_ns: int
    ) -> StoredSegment:
        """Check and store a complete partial segment; RejectedMessageError says why not."""
        accepted = self.accept(badge, partial)
        with self._cataloguer.transaction():
            return self.record(accepted, received_wall_ns)

    def accept(self, badge: EnrolledBadge, partial: PartialSegment) -> AcceptedSegment:
        """Check a complete partial segment whole and put it in the vault (fsynced).

        RejectedMessageError says why it is refused; then the vault holds nothing new.
        """
        key = str(partial.seq)
        where = f"segment {partial.seq} from badge {badge.badge_id}"
        stream = partial.stream or _stream_file(partial.path, where)
        if stream.sealed_sha256() != partial.sealed_sha256:
            raise RejectedMessageError(
                Reason.HASH_MISMATCH,
                f"segment {partial.seq} does not hash to the SHA-256 its chunks declared",
                key=key,
            )
        segment = opened(stream.finish, key=key)
        opened(lambda: segment.verify(badge.public_key), key=key)
        header = segment.header
        same_badge(header.badge_id, badge, "segment", key)
        if header.seq != partial.seq:
            raise RejectedMessageError(
                Reason.MALFORMED, f"chunks of seq {partial.seq} carry segment {header.seq}", key=key
            )
        within_int64(where, header.boot, header.mono_start_ns, header.mono_end_ns)
        within_int64(where, header.wall_start_ns, header.wall_end_ns)
        neighbours = self.check_links(header)
        self._vault.take_file(partial.path, partial.sealed_sha256)
        return AcceptedSegment(segment, partial, neighbours)

    def record(self, accepted: AcceptedSegment, received_wall_ns: int) -> StoredSegment:
        """Give an accepted segment its row and ledger entry, inside the caller's transaction.

        Returns the stored row (another intake process's, if it stored the same segment
        meanwhile); RejectedMessageError for a different segment stored under its seq, or a
        neighbour stored meanwhile that it does not link to.
        """
        segment, partial = accepted.segment, accepted.partial
        header = segment.header
        key = str(header.seq)
        with self._cataloguer.transaction():
            existing = self._catalogue.segment(header.badge_id, header.seq)
            if existing is not None:  # another intake process stored it meanwhile
                if existing.sealed_sha256 != partial.sealed_sha256:
                    raise RejectedMessageError(
                        Reason.CONFLICT, f"a different segment {key} is already stored", key=key
                    )
                return existing
            self.check_links(header, accepted.neighbours)
            return self._cataloguer.insert_segment(
                segment=segment,
                incident_id=partial.incident_id,
                sealed_sha256=partial.sealed_sha256,
                sealed_size=partial.total_size,
                received_wall_ns=received_wall_ns,
                capture=self.capture_time(header),
            )

    def check_links(
        self, header: SegmentHeader, known: tuple[bytes, ...] = ()
    ) -> tuple[bytes, ...]:
        """Refuse (``chain-break``) a segment that does not chain to its stored neighbours.

        Neighbours whose header bytes are in ``known`` were found to link already and are not
        checked again; return the header bytes of every stored neighbour.
        """
        found = []
        for seq in (header.seq - 1, header.seq + 1):
            neighbour = self._catalogue.segment(header.badge_id, seq) if seq >= 0 else None
            if neighbour is None:
                continue
            found.append(neighbour.header_bytes)
            if neighbour.header_bytes in known:
                continue
            pair = sorted((neighbour.header, header), key=lambda item: item.seq)
            report = check_chain(pair)
            if not report.intact:
                raise RejectedMessageError(
                    Reason.CHAIN_BREAK,
                    "; ".join(finding.message for finding in report.breaks),
                    key=str(header.seq),
                )
        return tuple(found)

    def capture_time(self, header: SegmentHeader) -> CaptureTime | None:
        """The segment's capture time in gateway time, from its badge's clock estimate."""
        estimate = self._clocks.estimate(header.badge_id, header.boot)
        if estimate is None or estimate.boot != header.boot:
            return None
        start, error = estimate.gateway_time(header.wall_start_ns, header.mono_start_ns)
        end, end_error = estimate.gateway_time(header.wall_end_ns, header.mono_end_ns)
        return CaptureTime(
            start_ns=start,
            end_ns=end,
            error_ns=max(error, end_error),
            offset_ns=estimate.offset_at(header.mono_start_ns),
            samples=estimate.samples,
        )


def _stream_file(path: Path, where: str) -> SegmentStream:
    """A reassembled segment's file, read once in blocks through a fresh stream."""
    stream = SegmentStream(where)
    with path.open("rb") as file:
        while block := file.read(_BLOCK):
            stream.update(block)
    return stream
