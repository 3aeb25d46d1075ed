"""The console's JSON API (same sessions, roles and CSRF rules as the pages) and its OpenAPI.

Log in through ``POST /login`` (the form), then call the API with the session cookie; a
POST carries the session's CSRF token in the ``X-CSRF-Token`` header (``GET /api/session``
tells it). The schema is published at ``/api/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.alerts.live import iso_time
from gateway.console.actions import AlertActionKind
from gateway.console.core import Call, Console, handler
from gateway.console.queries import custody_query, incident_query
from gateway.errors import ConsoleError
from gateway.storage.incident_index import IncidentSummary


def _incident(summary: IncidentSummary) -> dict[str, Any]:
    return {
        "badge": summary.badge_id,
        "incident": summary.incident_id,
        "opened_ns": summary.opened_ns,
        "opened": iso_time(summary.opened_ns),
        "location": summary.location,
        "wearer": summary.wearer,
        "status": summary.status,
        "legal_hold": summary.legal_hold,
    }


@handler("session", api=True)
def session_info(console: Console, call: Call) -> Response:
    """Who is signed in, their role, and the CSRF token for API POSTs."""
    return JSONResponse(
        {
            "username": call.session.username,
            "role": call.session.role.value,
            "csrf_token": call.session.csrf_token,
            "expires_ns": call.session.expires_at_ns,
        }
    )


@handler("incidents.read", api=True)
def incidents(console: Console, call: Call) -> Response:
    """Search incidents (the same filters as the page); ``next`` is the next page's cursor."""
    console.index.catch_up()
    page = console.index.search(incident_query(call))
    return JSONResponse(
        {
            "incidents": [_incident(summary) for summary in page.incidents],
            "next": page.next_cursor.text() if page.next_cursor is not None else None,
        }
    )


@handler("incidents.read", api=True)
def incident(console: Console, call: Call) -> Response:
    """One incident's summary and its console actions."""
    console.index.catch_up()
    summary = console.index.require(call.path("badge"), call.path("incident"))
    actions = console.desk.actions(summary.badge_id, summary.incident_id)
    return JSONResponse(
        {
            **_incident(summary),
            "actions": [
                {"action": action.action, "by": action.username, "at_ns": action.at_ns}
                for action in actions
            ],
        }
    )


@handler("alerts", api=True)
def alert_action(console: Console, call: Call) -> Response:
    """Acknowledge or resolve an alert."""
    name = call.path("action")
    if name not in ("acknowledge", "resolve"):
        raise ConsoleError(f"{name[:40]!r} is not something done to an alert")
    kind: AlertActionKind = "acknowledge" if name == "acknowledge" else "resolve"
    console.index.catch_up()
    done = console.desk.act(call.session.username, call.path("badge"), call.path("incident"), kind)
    return JSONResponse({"action": done.action, "by": done.username, "at_ns": done.at_ns})


@handler("badges.read", api=True)
def badges(console: Console, call: Call) -> Response:
    """Every badge with its enrolment and last known state."""
    found = []
    for badge in console.registry.all():
        state = console.badge_states.get(badge.badge_id)
        found.append(
            {
                "badge": badge.badge_id,
                "wearer": badge.wearer,
                "location": badge.location,
                "key_generation": badge.key_generation,
                "revoked_ns": badge.revoked_at_ns,
                "online": bool(state and state.online),
                "battery_percent": state.battery_percent if state else None,
                "battery_millivolts": state.battery_millivolts if state else None,
                "battery_rate_millipercent_per_hour": (
                    state.battery_rate_millipercent_per_hour if state else None
                ),
                "low_battery": bool(
                    state
                    and state.battery_percent is not None
                    and state.battery_percent < console.options.low_battery_percent
                ),
                "soc_temperature_millicelsius": (
                    state.soc_temperature_millicelsius if state else None
                ),
                "clock_synchronised": state.clock_synchronised if state else None,
                "storage_free_bytes": state.storage_free_bytes if state else None,
                "last_heartbeat_ns": state.last_heartbeat_wall_ns if state else None,
                "clock_offset_ns": state.clock_offset_ns if state else None,
                "clock_error_ns": state.clock_error_ns if state else None,
                "dropped_frames": state.dropped_frames if state else None,
            }
        )
    return JSONResponse({"badges": found})


@handler("custody.read", api=True)
def custody(console: Console, call: Call) -> Response:
    """Custody entries, newest first (the page's filters: subject, actor, action, from, to;
    ``offset`` or ``page``)."""
    entries = custody_query(call).search(console.custody)
    return JSONResponse(
        {
            "entries": [
                {
                    "ledger_index": entry.ledger_index,
                    "actor": entry.actor,
                    "action": entry.action,
                    "subject": entry.subject,
                    "justification": entry.justification,
                    "at_ns": entry.at_ns,
                    "at": iso_time(entry.at_ns),
                }
                for entry in entries
            ]
        }
    )


@handler("ledger.read", api=True)
def checkpoint(console: Console, call: Call) -> Response:
    """The latest signed checkpoint (its note as text) and the ledger's size."""
    latest = console.ledger.latest_checkpoint()
    body: dict[str, Any] = {"size": console.ledger.size, "checkpoint": None}
    if latest is not None:
        body["checkpoint"] = {
            "number": latest.number,
            "size": latest.size,
            "root": latest.root.hex(),
            "note": latest.note.decode("utf-8", "replace"),
            "created_ns": latest.created_at_ns,
            "created": iso_time(latest.created_at_ns),
            "timestamped": latest.timestamp_token is not None,
        }
    return JSONResponse(body)


async def openapi(_request: Request) -> Response:
    """The OpenAPI 3.1 description of this API."""
    return JSONResponse(OPENAPI)


def routes() -> list[BaseRoute]:
    """Every API route."""
    return [
        Route("/api/openapi.json", openapi),
        Route("/api/session", session_info),
        Route("/api/incidents", incidents),
        Route("/api/incidents/{badge}/{incident}", incident),
        Route("/api/alerts/{badge}/{incident}/{action}", alert_action, methods=["POST"]),
        Route("/api/badges", badges),
        Route("/api/custody", custody),
        Route("/api/ledger/checkpoint", checkpoint),
    ]


def _get(summary: str, role: str, parameters: list[dict[str, Any]] | None = None) -> Any:
    return {
        "get": {
            "summary": summary,
            "description": f"Needs the role: {role}.",
            "parameters": parameters or [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "401": {"description": "not logged in"},
                "403": {"description": "the role may not do this"},
            },
        }
    }


def _query(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "schema": {"type": "string"}} for n in names]


_PATH_IDS = [
    {"name": "badge", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "incident", "in": "path", "required": True, "schema": {"type": "string"}},
]

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "medbadge security console API",
        "version": "1",
        "description": (
            "Log in with POST /login (form fields username, password, code: the one-time "
            "code when the user has two-step login, csrf from the login page's cookie); "
            "send the session cookie with each call and, on POST, the "
            "X-CSRF-Token header from GET /api/session. Every footage access happens through "
            "the pages, which ask for a justification and record it in the custody log."
        ),
    },
    "components": {
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": "medbadge_session"}
        }
    },
    "security": [{"session": []}],
    "paths": {
        "/api/session": _get("the signed-in user, role and CSRF token", "any"),
        "/api/incidents": _get(
            "search incidents, newest first",
            "security officer, evidence custodian or auditor",
            _query("badge", "wearer", "location", "status", "from", "to", "q", "after", "limit"),
        ),
        "/api/incidents/{badge}/{incident}": _get(
            "one incident", "security officer, evidence custodian or auditor", _PATH_IDS
        ),
        "/api/alerts/{badge}/{incident}/{action}": {
            "post": {
                "summary": "acknowledge or resolve an alert",
                "description": "Needs the role: security officer. Recorded in the custody log.",
                "parameters": [
                    *_PATH_IDS,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["acknowledge", "resolve"]},
                    },
                    {
                        "name": "X-CSRF-Token",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {"description": "done"},
                    "400": {"description": "refused, with the reason"},
                    "403": {"description": "the role may not do this"},
                },
            }
        },
        "/api/badges": _get("badges with presence and health", "security officer or administrator"),
        "/api/custody": _get(
            "custody entries, newest first",
            "auditor",
            _query("subject", "actor", "action", "from", "to", "offset", "page"),
        ),
        "/api/ledger/checkpoint": _get("the latest signed ledger checkpoint", "auditor"),
    },
}
