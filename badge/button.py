"""The alert button, and the LED and buzzer that tell people around that recording is on."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

from badge.errors import BadgeError

log = logging.getLogger(__name__)


class AlertButton:
    """A gpiozero ``Button`` (pulled up, pressed = connected to ground) that calls ``on_press``.

    ``pin_factory`` is gpiozero's: None on a Pi, ``MockFactory()`` in tests.
    """

    def __init__(
        self,
        pin: int,
        on_press: Callable[[], object],
        *,
        bounce_ms: int = 50,
        pin_factory: Any = None,
    ) -> None:
        try:
            from gpiozero import Button, PinFactoryFallback  # noqa: PLC0415 - badge only
        except ImportError:
            raise BadgeError("gpiozero is missing: install medbadge[badge]") from None
        try:
            with warnings.catch_warnings():
                # gpiozero warns for each pin library it cannot load; the error says it all
                warnings.simplefilter("ignore", PinFactoryFallback)
                self._button = Button(
                    pin,
                    pull_up=True,
                    bounce_time=bounce_ms / 1000 if bounce_ms else None,
                    pin_factory=pin_factory,
                )
        except Exception as error:  # gpiozero raises many kinds when no GPIO is present
            raise BadgeError(f"cannot use GPIO pin {pin} for the alert button: {error}") from None
        self._bounce_ns = bounce_ms * 1_000_000
        self._last_press_ns: int | None = None
        self._on_press = on_press
        self._button.when_pressed = self._pressed

    def _pressed(self) -> None:
        # Debounce here as well as in gpiozero: not every pin driver filters edges, and a
        # contact that chatters must not read as a second press.
        now = time.monotonic_ns()
        if self._last_press_ns is not None and now - self._last_press_ns < self._bounce_ns:
            log.debug("ignored a bounce of the alert button")
            return
        self._last_press_ns = now
        self._on_press()

    def close(self) -> None:
        """Release the pin."""
        self._button.close()


class RecordingSigns:
    """An optional LED (on while an incident records) and buzzer (a beep for each change)."""

    def __init__(
        self, led_pin: int | None, buzzer_pin: int | None, *, pin_factory: Any = None
    ) -> None:
        from gpiozero import LED, Buzzer  # noqa: PLC0415 - only the badge needs GPIO

        self._led = LED(led_pin, pin_factory=pin_factory) if led_pin is not None else None
        self._buzzer = (
            Buzzer(buzzer_pin, pin_factory=pin_factory) if buzzer_pin is not None else None
        )

    def recording(self, on: bool) -> None:
        """Show that an incident is (or is no longer) being recorded."""
        if self._led is not None:
            self._led.value = on
        if self._buzzer is not None:
            self._buzzer.beep(on_time=0.15, off_time=0.1, n=1 if on else 2, background=True)

    def close(self) -> None:
        """Release the pins."""
        for device in (self._led, self._buzzer):
            if device is not None:
                device.close()
