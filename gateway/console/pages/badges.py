"""The badge pages: presence and health, enrolment with its one-time bundle, revocation,
cut-offs and their lifting."""

from __future__ import annotations

import io
import tarfile
import tempfile
import time
from pathlib import Path

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from evidence.errors import EvidenceError
from gateway.console.core import Call, Console, handler
from gateway.console.users import Role
from gateway.enrolment.enrolment import enroll_badge
from gateway.errors import ConsoleError, GatewayError


@handler("badges.read")
def badges_page(console: Console, call: Call) -> Response:
    """Every badge with its presence and health."""
    badges = [(badge, console.badge_states.get(badge.badge_id)) for badge in console.registry.all()]
    return console.page(
        call,
        "badges.html",
        badges=badges,
        cutoffs=console.storage.cutoffs.all(),
        lifted=call.query("lifted"),
        csrf=call.session.csrf_token,
        can_manage=call.session.role is Role.ADMIN,
        download=call.query("download"),
        enrolled=call.query("enrolled"),
        revoked=call.query("revoked"),
        now_ns=time.time_ns(),
    )


@handler("badges.manage")
def enrol(console: Console, call: Call) -> Response:
    """Enrol (or, with ``rotate``, re-key) a badge; offer its bundle once, as a tar.gz."""
    badge_id = call.field("badge_id").lower()
    with tempfile.TemporaryDirectory(prefix="medbadge-bundle-") as scratch:
        bundle_dir = Path(scratch) / badge_id
        try:
            enrolled = enroll_badge(
                console.data_dir,
                badge_id,
                bundle_dir,
                wearer=call.field("wearer"),
                location=call.field("location"),
                broker_host=call.field("broker_host") or console.options.broker_host,
                broker_port=_port(call.field("broker_port"), console.options.broker_port),
                operator=call.session.username,
                rotate=call.field("rotate") == "yes",
            )
        except (GatewayError, EvidenceError) as error:
            raise ConsoleError(str(error)) from None
        data = _tar_gz(bundle_dir, badge_id)
    token = console.offer_download(
        call.session.username, f"{badge_id}-bundle-gen{enrolled.key_generation}.tar.gz", data
    )
    return RedirectResponse(f"/badges?enrolled={badge_id}&download={token}", status_code=303)


def _port(text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConsoleError(f"broker port {text[:10]!r} is not a port number")
    return int(text)


def _tar_gz(directory: Path, name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=name)
    return buffer.getvalue()


@handler("badges.manage")
def bundle_download(console: Console, call: Call) -> Response:
    """The enrolment bundle, once: it holds the badge's private key."""
    taken = console.take_download(call.path("token"), call.session.username)
    if taken is None:
        raise ConsoleError(
            "this bundle was downloaded already or has expired; enrol the badge again with "
            "'rotate' to make a new one"
        )
    filename, data = taken
    return Response(
        data,
        media_type="application/gzip",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@handler("badges.manage")
def revoke(console: Console, call: Call) -> Response:
    """Revoke a badge: the intake refuses it now, the running gateway's broker at once."""
    badge_id = call.path("badge")
    reason = call.field("reason")
    if not reason:
        raise ConsoleError("say why the badge is revoked (lost, stolen, retired...)")
    console.registry.revoke(badge_id, operator=call.session.username, reason=reason)
    console.custody.record(call.session.username, "revoke", badge_id, reason)
    return RedirectResponse(f"/badges?revoked={badge_id}", status_code=303)


@handler("badges.manage")
def lift(console: Console, call: Call) -> Response:
    """Lift a badge's cut-off: the running gateway lets it log in to the broker again."""
    badge_id = call.path("badge")
    lifted = console.storage.cutoffs.lift(badge_id)
    if lifted is None:
        raise ConsoleError(f"badge {badge_id} is not cut off")
    detail = {"cut_off_at_ns": lifted.cut_off_at_ns}
    console.custody.record(call.session.username, "lift-cut-off", badge_id, detail=detail)
    return RedirectResponse(f"/badges?lifted={badge_id}", status_code=303)


def routes() -> list[BaseRoute]:
    """The badges routes."""
    return [
        Route("/badges", badges_page),
        Route("/badges/enrol", enrol, methods=["POST"]),
        Route("/badges/bundle/{token}", bundle_download),
        Route("/badges/{badge}/revoke", revoke, methods=["POST"]),
        Route("/badges/{badge}/lift-cutoff", lift, methods=["POST"]),
    ]
