"""Answers survive a reconnect: a frame whose connection is gone goes to the user's live ones.

A reconnecting client gets a new connection id, so the redirect polls the user's connections for
up to a grace period until one appears; clients drop duplicates by (conversationId, messageId,
sequence), so replaying frames there is safe. Where ``$connect`` recorded which connection
replaced the gone one (the same client instance reconnecting), the redirect waits for that one
and the user's other connections (other tabs) get the frames only if it has not appeared by the
end of the grace period.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from runtime.delivery import Dispatcher
from runtime.observability import logger
from runtime.posting import SendStatus

DEFAULT_GRACE_SECONDS = 5.0
# A client replaced by a reconnect may reconnect again before the redirect: follow so many.
MAX_REPLACEMENT_HOPS = 3
# How often a redirect looks for the user's new connection; a client reconnects within 3 s.
REDIRECT_POLL_SECONDS = 0.25


class Redirector:
    def __init__(
        self,
        dispatcher: Dispatcher,
        sleep: Callable[[float], None],
        monotonic: Callable[[], float],
        closed: threading.Event,
    ) -> None:
        self.dispatcher = dispatcher
        self.store = dispatcher.store
        self._sleep = sleep
        self._monotonic = monotonic
        self._closed = closed

    def owner(self, connection_id: str) -> str | None:
        """The user of a connection, read from its row (None when unknown or unreadable)."""
        try:
            connection = self.store.get(connection_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "looking up a connection's user failed",
                extra={"connectionId": connection_id, "error": type(exc).__name__},
            )
            return None
        return None if connection is None else connection.user_id

    def _live_connections(self, user_id: str) -> list[str]:
        try:
            return self.store.connection_ids_for_user(user_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "listing a user's connections failed",
                extra={"userId": user_id, "error": type(exc).__name__},
            )
            return []

    def _replacements(self, gone: Collection[str]) -> set[str]:
        """The connections that replaced the gone ones, and what replaced those in turn."""
        found: set[str] = set()
        frontier = list(gone)
        try:
            for _ in range(MAX_REPLACEMENT_HOPS):
                following = [r for c in frontier if (r := self.store.replacement_of(c))]
                frontier = [r for r in following if r not in found]
                if not frontier:
                    break
                found.update(frontier)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "looking up a gone connection's replacement failed",
                extra={"error": type(exc).__name__},
            )
        return found

    def redirect(
        self,
        user_id: str | None,
        frames: Sequence[bytes],
        excluded: set[str],
        grace_seconds: float,
        gone: Collection[str] = (),
    ) -> list[str]:
        """Deliver ``frames`` to the user's live connections, waiting up to the grace period.

        ``gone`` are the connections that answered 410: when a reconnect of the same client
        replaced one of them, only its replacement is waited for, until the grace period ends.
        Returns the connections that received every frame (empty if none appeared in time).
        Connections that fail are added to ``excluded`` and not tried again; a gone one still
        connecting keeps its row and is listed again.
        """
        if user_id is None:
            logger.warning("cannot redirect: the gone connection's user is unknown")
            return []
        deadline = self._monotonic() + grace_seconds
        replacements: set[str] = set()
        while True:
            if not replacements:  # one read per gone connection and poll until found
                replacements = self._replacements(gone)
            live = [c for c in self._live_connections(user_id) if c not in excluded]
            out_of_time = deadline - self._monotonic() <= 0 or self._closed.is_set()
            candidates = live
            if replacements and not out_of_time:
                candidates = [c for c in live if c in replacements]
            if candidates:
                deliveries = self.dispatcher.fan_out_counted(candidates, frames)
                delivered = [d.connection_id for d in deliveries if d.status is SendStatus.SENT]
                # A gone connection still in $connect keeps its row and is tried again on the
                # next poll; one whose row was removed is not listed again.
                excluded.update(
                    d.connection_id for d in deliveries if d.status is SendStatus.FAILED
                )
                if delivered:
                    logger.info(
                        "redirected to the user's live connection",
                        extra={"userId": user_id, "connectionIds": delivered},
                    )
                    return delivered
            if out_of_time:
                logger.info("no live connection to redirect to", extra={"userId": user_id})
                return []
            self._sleep(min(REDIRECT_POLL_SECONDS, max(0.0, deadline - self._monotonic())))
