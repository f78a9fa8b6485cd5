"""Notifiers: deliver one rendered notification to one channel (a signed webhook POST or an
e-mail over SMTP). I/O, no state: :mod:`reconciler.engine.notifying` decides what to send and
keeps the outbox; :mod:`reconciler.notifiers.messages` renders the bytes (pure).

Exceptions: :class:`DeliveryError` (one line for the outbox's ``last_error``; never a secret).
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery attempt failed. ``permanent``: retrying cannot help (e.g. the channel's
    secret cannot be read is not permanent - it may be fixed - but a malformed URL is)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
