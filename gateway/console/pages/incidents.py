"""The incident pages: search, one incident's case file, playback, export and legal hold."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.console import casefile, court
from gateway.console.core import Call, Console, handler
from gateway.console.playback import CONTENT_TYPE, fragmented_mp4
from gateway.console.queries import incident_query
from gateway.console.users import Role
from gateway.errors import ConsoleError, PlaybackError
from gateway.ledger import retention
from gateway.ledger.custody import MAX_PAGE

log = logging.getLogger(__name__)


@handler("incidents.read")
def incidents_page(console: Console, call: Call) -> Response:
    """Search incidents by badge, wearer, location, status and date, one page at a time."""
    console.index.catch_up()
    query = incident_query(call)
    page = console.index.search(query)
    params = {
        key: call.query(key)
        for key in ("badge", "wearer", "location", "status", "from", "to", "q")
        if call.query(key)
    }
    return console.page(
        call,
        "incidents.html",
        page=page,
        filters=params,
        paged=bool(call.query("after")),
        locations=console.index.choices("location"),
        wearers=console.index.choices("wearer"),
        badges=console.index.choices("badge_id"),
    )


@handler("incidents.read")
def incident_page(console: Console, call: Call) -> Response:
    """One incident: timeline, verification, playback (after a justification), export, hold."""
    console.index.catch_up()
    summary = console.index.require(call.path("badge"), call.path("incident"))
    stored = casefile.gather(console.ledger, summary)
    actions = [
        (action.action, action.username, action.at_ns)
        for action in console.desk.actions(summary.badge_id, summary.incident_id)
    ]
    custody = console.custody.entries(subject=summary.incident_id, limit=MAX_PAGE)
    grant = call.query("grant")
    playable = bool(grant) and console.granted(
        grant, call.session.username, summary.badge_id, summary.incident_id
    )
    return console.page(
        call,
        "incident.html",
        summary=summary,
        stored=stored,
        timeline=casefile.timeline(stored, actions, custody),
        verification=_verification(console, stored),
        csrf=call.session.csrf_token,
        grant=grant if playable else "",
        can_view=call.session.role in (Role.OFFICER, Role.CUSTODIAN),
        can_export=call.session.role is Role.CUSTODIAN,
        exported=call.query("exported"),
    )


def _verification(console: Console, stored: casefile.CaseFile) -> casefile.StoreCheck:
    """The incident's verification, remembered until a segment or checkpoint is added."""
    number = stored.checkpoint.number if stored.checkpoint is not None else 0
    key = (stored.summary.badge_id, stored.summary.incident_id, len(stored.segments), number)
    cached = console.verification_cache.get(key)
    if isinstance(cached, casefile.StoreCheck):
        return cached
    result = casefile.check_store(stored, console.registry, console.vault, console.ledger)
    if len(console.verification_cache) > 1000:
        console.verification_cache.clear()
    console.verification_cache[key] = result
    return result


@handler("footage.view")
def view_footage(console: Console, call: Call) -> Response:
    """Record why the viewer looks (custody entry "view"), then let them play the incident."""
    summary = console.index.require(call.path("badge"), call.path("incident"))
    justification = call.field("justification")
    if not justification:
        raise ConsoleError("say why you need to see this footage; the custody log records it")
    console.custody.record(
        call.session.username,
        "view",
        summary.incident_id,
        justification,
        detail={"badge": summary.badge_id, "client": call.client},
    )
    grant = console.grant(call.session.username, summary.badge_id, summary.incident_id)
    return RedirectResponse(
        f"/incidents/{summary.badge_id}/{summary.incident_id}?grant={grant}#player",
        status_code=303,
    )


@handler("footage.view")
def footage(console: Console, call: Call) -> Response:
    """The incident's footage as fragmented MP4, decrypted and remuxed as it streams."""
    badge_id, incident_id = call.path("badge"), call.path("incident")
    if not console.granted(call.path("grant"), call.session.username, badge_id, incident_id):
        raise ConsoleError("state why you view this footage first (the grant has expired)")
    incident = console.index.require(badge_id, incident_id)
    deleted = retention.deletion_notice(console.storage, badge_id, incident_id)
    if deleted is not None:
        raise ConsoleError(f"{deleted}; it cannot be played")
    stored = casefile.gather(console.ledger, incident)
    if not stored.segments:
        raise ConsoleError(f"no segment of incident {incident_id} has arrived yet")
    key = console.custodian_key()
    where = f"incident {incident_id} of badge {badge_id}"
    chunks = fragmented_mp4(casefile.plaintexts(stored.segments, console.vault, key), where)
    first = _first_chunk(chunks, where)
    return StreamingResponse(
        _resume(first, chunks, where),
        media_type=CONTENT_TYPE,
        headers={"cache-control": "no-store"},
    )


def _first_chunk(chunks: Iterator[bytes], where: str) -> bytes:
    """The first MP4 bytes, so a recording that cannot play is an error page, not a bad video."""
    try:
        return next(chunks)
    except StopIteration:
        raise ConsoleError(f"{where} produced no video") from None
    except PlaybackError as error:
        raise ConsoleError(str(error)) from None


def _resume(first: bytes, rest: Iterator[bytes], where: str) -> Iterator[bytes]:
    yield first
    try:
        yield from rest
    except PlaybackError:
        log.exception("playback of %s stopped part way", where)


@handler("evidence.export")
def export(console: Console, call: Call) -> Response:
    """Export the incident for court (custody entry "export"): the evidence package."""
    summary = console.index.require(call.path("badge"), call.path("incident"))
    justification = call.field("justification")
    if not justification:
        raise ConsoleError("say why the evidence is exported (a case or request number)")
    filename, data = court.export_for_court(console, call.session.username, summary, justification)
    token = console.offer_download(call.session.username, filename, data)
    return RedirectResponse(
        f"/incidents/{summary.badge_id}/{summary.incident_id}?exported={token}", status_code=303
    )


@handler("evidence.export")
def export_download(console: Console, call: Call) -> Response:
    """The evidence package, once."""
    taken = console.take_download(call.path("token"), call.session.username)
    if taken is None:
        raise ConsoleError("this package was downloaded already or has expired; export again")
    filename, data = taken
    return Response(
        data,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@handler("evidence.hold")
def legal_hold(console: Console, call: Call) -> Response:
    """Place or release a legal hold (custody entry "legal-hold" or "release-hold")."""
    held = call.request.url.path.endswith("/hold")
    badge_id, incident_id = call.path("badge"), call.path("incident")
    console.desk.hold(call.session.username, badge_id, incident_id, held, call.field("reason"))
    return RedirectResponse(f"/incidents/{badge_id}/{incident_id}", status_code=303)


def routes() -> list[BaseRoute]:
    """The incidents routes."""
    incident = "/incidents/{badge}/{incident}"
    return [
        Route("/incidents", incidents_page),
        Route(incident, incident_page),
        Route(incident + "/view", view_footage, methods=["POST"]),
        Route(incident + "/video/{grant}", footage),
        Route(incident + "/export", export, methods=["POST"]),
        Route(incident + "/export/{token}", export_download),
        Route(incident + "/hold", legal_hold, methods=["POST"]),
        Route(incident + "/release", legal_hold, methods=["POST"]),
    ]
