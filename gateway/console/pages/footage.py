"""The player's footage routes: the plan of an incident's stored segments, and each segment.

Both need the grant a stated justification gave (custody entry "view", made once per
view by ``incidents.view_footage``). The page's player reads the plan, appends each segment
as fragmented MP4 on a timeline that starts at 0, and reads the plan again while the
incident records, so it follows new segments as they are stored.
"""

from __future__ import annotations

import time

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.console import casefile, footage
from gateway.console.core import Call, Console, handler
from gateway.console.playback import CONTENT_TYPE, segment_mp4
from gateway.errors import ConsoleError, PlaybackError
from gateway.ledger import retention

CODECS_HEADER = "x-codecs"
"""The segment's codecs (RFC 6381), for the player's MediaSource."""


def _granted_case(console: Console, call: Call) -> casefile.CaseFile:
    """The case file of the incident in the path, once the call's grant lets its user play it."""
    badge_id, incident_id = call.path("badge"), call.path("incident")
    if not console.granted(call.path("grant"), call.session.username, badge_id, incident_id):
        raise ConsoleError("state why you view this footage first (the grant has expired)")
    console.index.catch_up()
    summary = console.index.require(badge_id, incident_id)
    deleted = retention.deletion_notice(console.storage, badge_id, incident_id)
    if deleted is not None:
        raise ConsoleError(f"{deleted}; it cannot be played")
    return casefile.gather(console.ledger, summary)


@handler("footage.view", api=True)
def footage_plan(console: Console, call: Call) -> Response:
    """The stored segments on the player's timeline, the presses, and whether it records."""
    plan = footage.plan(_granted_case(console, call))
    return JSONResponse(plan.to_json(time.time_ns()), headers={"cache-control": "no-store"})


@handler("footage.view", api=True)
def footage_segment(console: Console, call: Call) -> Response:
    """One stored segment, decrypted and remuxed to MP4 at its place on the timeline."""
    case = _granted_case(console, call)
    origin, seq = int(call.path("origin")), int(call.path("seq"))
    placed = footage.plan(case).place(origin, seq)
    stored = next(segment for segment in case.segments if segment.seq == seq)
    where = f"segment {seq} of incident {case.summary.incident_id}"
    key = console.custodian_key()
    try:
        plaintext = next(casefile.plaintexts([stored], console.vault, key))
        data, codecs = segment_mp4(plaintext, placed.start_ns, where)
    except PlaybackError as error:
        raise ConsoleError(str(error)) from None
    return Response(
        data,
        media_type=CONTENT_TYPE,
        headers={"cache-control": "no-store", CODECS_HEADER: codecs},
    )


def routes() -> list[BaseRoute]:
    """The footage routes."""
    video = "/incidents/{badge}/{incident}/video/{grant}"
    return [
        Route(video + "/plan", footage_plan),
        Route(video + "/{origin:int}/{seq:int}", footage_segment),
    ]
