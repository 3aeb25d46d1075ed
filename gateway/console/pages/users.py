"""The console users page: add, change role, disable, reset password, unlock logins."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.console.core import Call, Console, handler
from gateway.console.users import ROLE_TITLES, Role, parse_role
from gateway.errors import ConsoleError


@handler("users.manage")
def users_page(console: Console, call: Call) -> Response:
    """Console users: add, change role, disable, reset password."""
    users = console.users.all()
    return console.page(
        call,
        "users.html",
        users=users,
        locks={user.username: console.limiter.locks(user.username) for user in users},
        factors={
            user.username: console.second_factor.state(user.username, user.role) for user in users
        },
        roles=[(role.value, ROLE_TITLES[role]) for role in Role],
        csrf=call.session.csrf_token,
    )


@handler("users.manage")
def add_user(console: Console, call: Call) -> Response:
    """Create a user (custody entry "user-change")."""
    username = call.field("username").lower()
    role = parse_role(call.field("role"))
    console.users.create(
        username, call.form.get("password", ""), role, created_by=call.session.username
    )
    console.custody.record(
        call.session.username, "user-change", username, detail={"change": "created", "role": role}
    )
    return RedirectResponse("/users", status_code=303)


@handler("users.manage")
def change_user(console: Console, call: Call) -> Response:
    """Change a user's role, disable or enable them, set a new password, or unlock logins."""
    username = call.path("username")
    change = call.field("change")
    target = console.users.require(username)
    detail: dict[str, str | int] = {"change": change}
    leaves_admin = target.role is Role.ADMIN and not target.disabled
    if change == "role":
        role = parse_role(call.field("role"))
        if leaves_admin and role is not Role.ADMIN and console.users.active_admins() <= 1:
            raise ConsoleError("the last administrator cannot be given another role")
        console.users.set_role(username, role)
        detail["role"] = role.value
    elif change in ("disable", "enable"):
        if change == "disable" and leaves_admin and console.users.active_admins() <= 1:
            raise ConsoleError("the last administrator cannot be disabled")
        console.users.set_disabled(username, change == "disable")
    elif change == "password":
        console.users.set_password(username, call.form.get("password", ""))
    elif change == "reset-second-factor":
        console.second_factor.reset(username)
    elif change == "unlock":
        detail["addresses"] = console.limiter.unlock(username)
    else:
        raise ConsoleError(f"{change[:40]!r} is not a change to a user")
    if change != "unlock":
        console.sessions.close_all(username)
    console.custody.record(call.session.username, "user-change", username, detail=detail)
    return RedirectResponse("/users", status_code=303)


def routes() -> list[BaseRoute]:
    """The users routes."""
    return [
        Route("/users", users_page),
        Route("/users", add_user, methods=["POST"]),
        Route("/users/{username}", change_user, methods=["POST"]),
    ]
