"""Timers for settings where 0 means "no limit".

Pgpool-II documents ``authentication_timeout = 0`` and ``connect_timeout = 0`` as
"disabled".  A plain ``callLater(0, ...)`` would instead fire at once and fail every
connection, so every timer of those settings goes through :func:`call_later`, and a connect
timeout of 0 becomes Twisted's None (``protocols.backend.connect_address``).
"""

from __future__ import annotations

# What a reset of a released link gets when connect_timeout is 0: a reset that never
# ends would hold a server connection forever, and DISCARD ALL takes milliseconds.
RESET_TIMEOUT_WHEN_DISABLED = 10.0


class _NoTimer:
    """Stands in for a DelayedCall when the limit is disabled: never fires."""

    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass

    def reset(self, seconds: float) -> None:
        pass

    def delay(self, seconds: float) -> None:
        pass


NO_TIMER = _NoTimer()


def call_later(clock, seconds: float, fn, *args):
    """``clock.callLater``, or :data:`NO_TIMER` when ``seconds`` is 0 (disabled)."""
    if seconds <= 0:
        return NO_TIMER
    return clock.callLater(seconds, fn, *args)
