"""Commands to mosquitto's dynamic security plugin, sent on the gateway's broker connection.

A command is a JSON message on ``$CONTROL/dynamic-security/v1``; the plugin answers on
``.../response`` with the same ``correlationData``, and an ``error`` when it refused.
``BrokerControl`` sends through any ``publish(topic, payload)`` and is handed each response
(``answered``) by whoever reads the connection, so it shares the intake's connection: the
broker uses the login name as the client id, so a second connection as ``gateway`` would
knock the intake off (decision 1703).
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from typing import Final

from gateway.broker.dynsec import CONTROL_TOPIC
from gateway.errors import BrokerControlError

ANSWER_S: Final = 5.0
"""How long a command waits for the plugin's answer."""
NOT_FOUND: Final = "Client not found"
"""The plugin's error for a name it has no client for (a badge already deleted)."""
_MAX_WAITING = 1024

Publish = Callable[[str, bytes], None]


class BrokerControl:
    """Sends dynamic security commands and waits for the plugin's answers."""

    def __init__(self, publish: Publish) -> None:
        """Send through ``publish(topic, payload)`` (QoS 1 on the gateway's connection)."""
        self._publish = publish
        self._changed = threading.Condition()
        self._answers: dict[str, dict[str, object]] = {}
        self._waiting: set[str] = set()

    def disable(self, username: str, timeout: float = ANSWER_S) -> None:
        """Disable a client: the broker disconnects it and refuses its logins until enabled."""
        self.command({"command": "disableClient", "username": username}, timeout)

    def enable(self, username: str, timeout: float = ANSWER_S) -> None:
        """Enable a disabled client again."""
        self.command({"command": "enableClient", "username": username}, timeout)

    def delete(self, username: str, timeout: float = ANSWER_S) -> None:
        """Delete a client: the broker disconnects it and knows its name no more. Deleting a
        name that has no client is no error (it was deleted before)."""
        try:
            self.command({"command": "deleteClient", "username": username}, timeout)
        except BrokerControlError as error:
            if error.plugin_error != NOT_FOUND:
                raise

    def command(self, command: dict[str, object], timeout: float = ANSWER_S) -> dict[str, object]:
        """Send one command and return the plugin's answer; BrokerControlError if it refused
        or did not answer within ``timeout`` seconds."""
        answer = self.commands([command], timeout)[0]
        error = answer.get("error")
        if error is not None:
            raise BrokerControlError(
                f"the broker refused {command.get('command')} for "
                f"{command.get('username')!r}: {error}",
                plugin_error=str(error),
            )
        return answer

    def commands(
        self, commands: list[dict[str, object]], timeout: float = ANSWER_S
    ) -> list[dict[str, object]]:
        """Send ``commands`` in one message and return the plugin's answers in their order
        (an answer with ``error`` is a refusal); BrokerControlError if not all came in time."""
        correlations = [secrets.token_hex(8) for _ in commands]
        tagged = [
            {**command, "correlationData": correlation}
            for command, correlation in zip(commands, correlations, strict=True)
        ]
        with self._changed:
            if len(self._waiting) + len(tagged) > _MAX_WAITING:
                raise BrokerControlError("too many broker commands are waiting for answers")
            self._waiting.update(correlations)
        try:
            self._publish(CONTROL_TOPIC, json.dumps({"commands": tagged}).encode("utf-8"))
            with self._changed:
                if not self._changed.wait_for(
                    lambda: all(item in self._answers for item in correlations), timeout
                ):
                    raise BrokerControlError(
                        f"the broker did not answer within {timeout} s: is its dynamic security "
                        "plugin loaded (run 'gateway broker-config' and restart mosquitto)?"
                    )
                return [self._answers[item] for item in correlations]
        finally:
            with self._changed:
                self._waiting.difference_update(correlations)
                for item in correlations:
                    self._answers.pop(item, None)

    def answered(self, payload: bytes) -> None:
        """Take a message from the response topic (call it from the connection's reader)."""
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return  # not an answer to anything we sent
        if not isinstance(responses, list):
            return
        with self._changed:
            for response in responses:
                if not isinstance(response, dict):
                    continue
                correlation = response.get("correlationData")
                if isinstance(correlation, str) and correlation in self._waiting:
                    self._answers[correlation] = response
            self._changed.notify_all()
