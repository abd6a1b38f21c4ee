"""``$connect``: store the connection row for the user the authorizer identified, and close the
connection the same client instance opened before.

A client that gave up on a connection (its network changed, or its liveness check timed out on
a dead path) reconnects at once, while API Gateway may hold the old socket open until its idle
timeout: posts to it succeed, so an answer streaming there would never be replayed on the new
connection. A client that sends ``?instanceId=`` (the same id on every reconnect of one client
object; both clients do) gets that old connection closed with ``DeleteConnection`` here; its
next post answers 410 and ``MessageSender`` moves the answer to the new connection.

The latest connection of an instance is the one API Gateway accepted last (``connectedAt``): a
handshake the client gave up on while its ``$connect`` was slow, finishing after the client's
next one, is refused (409) rather than allowed to close the newer connection. One that began
first but was replaced while its ``$connect`` still ran is refused too: the newer ``$connect``'s
``DeleteConnection`` found it not yet open (410), so refusing it here is what closes it. When
the newer ``$connect`` records the replacement just after this one read that nothing had
replaced it, this one returns 200 and opens a moment later; the newer one's ``DeleteConnection``
then answers 410 for a connection whose row is stored and young, and it tries once more, last,
after ``OPENING_RETRY_PAUSE_SECONDS``. That narrows the race further without closing it: an
upgrade slower than the pause still opens, and stays until its idle timeout.

401 without an identity, 400 for a malformed ``instanceId``, 409 for a superseded connection,
429 over the per-user connection limit, 500 when the store fails or the Lambda's time left
cannot cover another call. Closing the earlier connection is best effort: its failure is logged
and counted, and the client connects.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from runtime import aws, schema
from runtime.aws import Deadline
from runtime.config import StoreConfig, management_endpoint_from_env
from runtime.connections import ConnectionLimitReached, ConnectionStore, SupersededConnection
from runtime.handlers._common import RequestContext, connected_at_ms, response, user_id_of
from runtime.observability import Metric, count, handles_invocation, logger

STORE = ConnectionStore(StoreConfig.from_env())
_INSTANCE_ID = re.compile(schema.INSTANCE_ID_PATTERN)
_CLOSE_FAILED = "could not close the connection this client instance opened before"
# A connection whose $connect has returned answers 410 until API Gateway has finished its
# upgrade. AWS documents no figure for that step; the one retry of DeleteConnection waits this
# long first, our margin for it.
OPENING_RETRY_PAUSE_SECONDS = 0.25


@dataclass(frozen=True)
class PreviousConnection:
    """The connection the same client instance opened before, now closed or gone. When it
    answered 410 while it may have been opening (``_may_be_opening``), closing is tried once
    more at the end of this ``$connect`` (``close_if_opened``)."""

    connection_id: str
    may_be_opening: bool = False


class BadInstanceId(ValueError):
    pass


def instance_id_of(event: dict[str, Any]) -> str | None:
    """The ``instanceId`` query parameter, or None when the URL has none; ``BadInstanceId`` when
    it does not match ``schema.INSTANCE_ID_PATTERN``. API Gateway puts the query string in
    ``queryStringParameters`` of ``$connect`` only, absent without one (DESIGN §5)."""
    query = event.get("queryStringParameters") or {}
    value = query.get(schema.INSTANCE_QUERY_PARAMETER)
    if value is None:
        return None
    if not _INSTANCE_ID.fullmatch(value):
        raise BadInstanceId(
            f"{schema.INSTANCE_QUERY_PARAMETER} must be 1 to 64 letters, digits, '-' or '_' "
            "(a random id the client keeps for its lifetime); leave it out to skip closing "
            "the connection this client opened before"
        )
    return str(value)


def close_previous(
    user_id: str, instance_id: str, connection_id: str, connected_at: int, deadline: Deadline
) -> PreviousConnection | None:
    """Record the instance's new connection and close the one before it (``DeleteConnection``),
    returning the closed one (one already gone counts as closed, and is not counted in
    ``ReplacedConnectionsClosed``). ``SupersededConnection`` when the instance has opened a
    newer connection than this one; any other failure is logged and counted, and the new
    connection stands."""
    try:
        deadline.check()
        previous = STORE.replace_instance_connection(
            user_id, instance_id, connection_id, connected_at
        )
    except SupersededConnection:
        raise
    except Exception:
        _failed("could not record this client instance's connection")
        return None
    if previous is None:
        return None
    extra = {"previousConnectionId": previous}
    try:
        deadline.check()
        # First: once the old one answers 410, its answer's frames are redirected here.
        STORE.record_replacement(previous, connection_id)
    except Exception:
        _failed("could not record what replaces the previous connection", extra)
    try:
        closed = _delete_connection(previous, deadline)
    except Exception:
        _failed(_CLOSE_FAILED, extra)
        return None
    if not closed:
        logger.info("the connection this client instance opened before is closed", extra=extra)
        return PreviousConnection(
            previous, may_be_opening=_may_be_opening(previous, connected_at, deadline, extra)
        )
    count(Metric.REPLACED_CONNECTIONS_CLOSED)
    logger.info("closed the connection this client instance opened before", extra=extra)
    return PreviousConnection(previous)


def close_if_opened(previous: PreviousConnection, deadline: Deadline) -> None:
    """The one retry of ``DeleteConnection`` for a previous connection that answered 410 while
    it may have been opening: after ``OPENING_RETRY_PAUSE_SECONDS``, once this connection is
    stored, so that nothing this ``$connect`` still needs waits on it. Skipped without the time
    for the pause and the call; a failure is logged, not counted: the 410 already said gone."""
    extra = {"previousConnectionId": previous.connection_id}
    if deadline.seconds_left() < OPENING_RETRY_PAUSE_SECONDS + aws.call_worst_case_seconds():
        logger.info("no time left to try closing the previous connection again", extra=extra)
        return
    time.sleep(OPENING_RETRY_PAUSE_SECONDS)
    try:
        closed = _delete_connection(previous.connection_id, deadline)
    except Exception:
        logger.warning(
            "connect: could not try closing the previous connection again",
            exc_info=True,
            extra=extra,
        )
        return
    if closed:
        count(Metric.REPLACED_CONNECTIONS_CLOSED)
        logger.info("closed the connection this client instance opened before, on a second try")


def _delete_connection(connection_id: str, deadline: Deadline) -> bool:
    """``DeleteConnection``: True when it closed an open connection, False when API Gateway has
    no open connection of that id (410, ``GoneException``)."""
    deadline.check()
    management = aws.management_api(management_endpoint_from_env())
    try:
        management.delete_connection(ConnectionId=connection_id)
    except ClientError as exc:
        if aws.error_code(exc) == aws.GONE_CODE:
            return False
        raise
    return True


def _may_be_opening(
    previous: str, connected_at: int, deadline: Deadline, extra: dict[str, str]
) -> bool:
    """Whether a 410 for ``previous`` may mean that its ``$connect`` returned a moment ago and
    API Gateway has not opened it yet, so that one more ``DeleteConnection`` after a pause
    would close it: its row is stored (its ``$connect`` got that far; a row gone means it was
    closed, or it will find ``REPLACED#`` itself in ``replaced_meanwhile``) and it was accepted
    within the integration timeout before this one (``schema.connecting_cutoff_ms``, the rule
    ``ConnectionStore.remove_gone`` keeps such rows by). A connection that closed a moment ago,
    younger than that, whose ``$disconnect`` has not run yet, looks the same: it costs this
    connect the pause and a call."""
    try:
        deadline.check()
        row = STORE.get(previous)
    except Exception:
        _failed(
            "could not read the row of the connection this client instance opened before", extra
        )
        return False
    return row is not None and row.connected_at_ms >= schema.connecting_cutoff_ms(connected_at)


def replaced_meanwhile(connection_id: str, deadline: Deadline) -> bool:
    """Whether a newer connection of the same client instance replaced this one while this
    ``$connect`` ran, and so this one must be refused: the newer ``$connect`` recorded the
    replacement (``REPLACED#<id>``, one consistent ``GetItem`` here, read after this row is
    stored), and its ``DeleteConnection`` answered 410 because API Gateway had not opened this
    connection yet. This connection's row is removed again. A read that fails is logged and
    counted, and the connection stands, as when closing fails."""
    try:
        deadline.check()
        replacement = STORE.replacement_of(connection_id)
    except Exception:
        _failed("could not check whether a newer connection of this client instance replaced it")
        return False
    if replacement is None:
        return False
    try:
        STORE.remove(connection_id, deadline=deadline)
    except Exception:  # its TTL removes it; the connection is refused all the same
        _failed("could not remove the row of a connection a newer one replaced")
    return True


def _failed(what: str, extra: dict[str, str] | None = None) -> None:
    """A step of closing the previous connection, or of checking whether this one was replaced,
    failed: logged with its traceback, counted."""
    logger.exception(f"connect: {what}", extra=extra)
    count(Metric.UNEXPECTED_FAILURES)


@handles_invocation
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_context = RequestContext(event)
    user_id = user_id_of(event)
    if user_id is None:
        logger.warning("connect refused: no userId or principalId from the authorizer")
        return response(401, "Unauthorized")
    try:
        instance_id = instance_id_of(event)
    except BadInstanceId as exc:
        logger.warning("connect refused: malformed instanceId")
        return response(400, str(exc))
    connection_id = request_context.connection_id
    connected_at = connected_at_ms(request_context, int(time.time() * 1000))
    deadline = Deadline.of(context)
    closed: list[str] = []
    previous: PreviousConnection | None = None
    if instance_id is not None:
        try:
            previous = close_previous(user_id, instance_id, connection_id, connected_at, deadline)
        except SupersededConnection as exc:
            logger.warning("connect refused: the client instance has a newer connection")
            count(Metric.SUPERSEDED_CONNECTIONS_REFUSED)
            return response(409, str(exc))
        # At the per-user limit its slot is free now: its $disconnect comes later, if at all.
        closed = [] if previous is None else [previous.connection_id]
    try:
        STORE.add(connection_id, user_id, connected_at, closed=closed, deadline=deadline)
    except ConnectionLimitReached as exc:
        logger.warning("connect refused: user at the connection limit", extra={"limit": exc.limit})
        return response(429, "Too many connections")
    except Exception:
        logger.exception("connect failed: could not store the connection")
        count(Metric.UNEXPECTED_FAILURES)
        return response(500, "Internal error")
    if instance_id is not None and replaced_meanwhile(connection_id, deadline):
        logger.warning("connect refused: the client instance opened a newer connection meanwhile")
        count(Metric.SUPERSEDED_CONNECTIONS_REFUSED)
        return response(409, str(SupersededConnection()))
    if previous is not None and previous.may_be_opening:
        close_if_opened(previous, deadline)
    count(Metric.CONNECTIONS_OPENED)
    logger.info("connected")
    return response(200)
