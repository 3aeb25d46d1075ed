"""The broker's accounts and access rules as mosquitto's dynamic security plugin reads them.

mosquitto 2's dynamic security plugin keeps clients (a login: name, password hash, roles,
disabled or not) and roles (lists of ACLs) in one JSON file, and changes them while the
broker runs through commands on ``$CONTROL/dynamic-security/v1`` (decision 1703). The
plugin in mosquitto 2.0 does not substitute ``%u`` in its ACLs, so each badge has a role of
its own, ``badge:<id>``, granting exactly its two subtrees; the client's name is the badge
id, which is also what a TLS client certificate will carry (``use_identity_as_username``),
so the same role serves either way of logging in. Gateway accounts share the ``gateway``
role: every badge's uplink, every badge's downlink, and the plugin's control topic.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from evidence.topics import ALL_BADGES_FILTER, PREFIX, gateway_filter
from gateway.errors import BrokerConfigError

DYNSEC_FILE: Final = "dynamic-security.json"
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = f"{CONTROL_TOPIC}/response"
GATEWAY_ROLE: Final = "gateway"
PLUGIN_CANDIDATES: Final = (
    Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so"),
    Path("/usr/lib/mosquitto_dynamic_security.so"),
)
"""Where Debian's mosquitto package installs the plugin, per architecture."""


def find_plugin(candidates: Sequence[Path] = PLUGIN_CANDIDATES) -> Path:
    """The dynamic security plugin's path; BrokerConfigError says how to get it if absent."""
    for path in candidates:
        if path.is_file():
            return path
    places = ", ".join(str(path) for path in candidates)
    raise BrokerConfigError(
        f"mosquitto's dynamic security plugin is not installed (looked for {places}): "
        "install Debian's mosquitto package (2.0 or newer), which ships it"
    )


def badge_role(badge_id: str) -> str:
    """The role of one badge's own topics."""
    return f"badge:{badge_id}"


def fingerprint(password_hash: str) -> str:
    """A badge client's ``textdescription``: which registry password hash it was given (the
    plugin never tells a client's password back, so the gateway compares this instead)."""
    digest = hashlib.sha256(password_hash.encode("ascii")).hexdigest()[:32]
    return f"medbadge password {digest}"


def dynsec_document(accounts: Sequence[tuple[str, str, str, bool]]) -> str:
    """The plugin's JSON for ``accounts`` given as (name, $7$ hash, role, disabled)."""
    clients = []
    roles = [_gateway_role()]
    for name, password_hash, role, disabled in accounts:
        role_name = GATEWAY_ROLE if role == "gateway" else badge_role(name)
        described: dict[str, object] = {}
        if role != "gateway":
            roles.append(badge_role_document(name))
            described["textdescription"] = fingerprint(password_hash)
        clients.append(
            {
                "username": name,
                **described,
                **_password_fields(password_hash),
                "roles": [{"rolename": role_name}],
                "disabled": disabled,
            }
        )
    document = {
        "clients": clients,
        "groups": [],
        "roles": roles,
        # nothing is allowed that a role does not grant; unsubscribing is always harmless
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
    }
    return json.dumps(document, indent=2) + "\n"


def _password_fields(password_hash: str) -> dict[str, object]:
    """The plugin's ``password``/``salt``/``iterations`` from a mosquitto ``$7$`` hash: both
    are PBKDF2-HMAC-SHA512 with a 12-byte salt and a 64-byte result."""
    try:
        _, kind, iterations, salt, digest = password_hash.split("$")
        if kind != "7" or len(base64.b64decode(salt, validate=True)) != 12:
            raise ValueError(kind)
        return {"password": digest, "salt": salt, "iterations": int(iterations)}
    except ValueError:
        raise BrokerConfigError("a broker password hash is not in mosquitto's $7$ form") from None


def _acl(kind: str, topic: str) -> dict[str, object]:
    return {"acltype": kind, "topic": topic, "allow": True, "priority": 0}


def badge_role_document(badge_id: str) -> dict[str, object]:
    """A badge publishes under its own badge/<id>/ subtree and reads its gateway/<id>/ one."""
    downlink = gateway_filter(badge_id)
    return {
        "rolename": badge_role(badge_id),
        "acls": [
            _acl("publishClientSend", f"{PREFIX}/badge/{badge_id}/#"),
            _acl("subscribePattern", downlink),
            _acl("publishClientReceive", downlink),
        ],
    }


def _gateway_role() -> dict[str, object]:
    """Every badge's uplink (directly or as a shared subscription), every downlink, and the
    plugin's control topic, so that a revocation or a cut-off reaches the broker at once."""
    return {
        "rolename": GATEWAY_ROLE,
        "acls": [
            _acl("subscribePattern", ALL_BADGES_FILTER),
            _acl("subscribePattern", f"$share/+/{ALL_BADGES_FILTER}"),
            _acl("publishClientReceive", ALL_BADGES_FILTER),
            _acl("publishClientSend", f"{PREFIX}/gateway/#"),
            _acl("publishClientSend", CONTROL_TOPIC),
            _acl("subscribePattern", RESPONSE_TOPIC),
            _acl("publishClientReceive", RESPONSE_TOPIC),
        ],
    }
