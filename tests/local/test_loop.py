"""The event loop local mode serves on (``local/loop.py``): uvloop's where it is installed, for
``python -m local`` and for a stack in the background alike; and the event fields it formats
once per second or draws from a seeded generator stay what API Gateway sends."""

from __future__ import annotations

import asyncio
import calendar
import re

import pytest

from local import events
from local.background import Background
from local.loop import new_event_loop, run

uvloop = pytest.importorskip("uvloop")


def test_python_m_local_runs_on_uvloop():
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert run(loop_type()) is uvloop.Loop


def test_a_background_service_runs_on_uvloop():
    class Service:
        async def __aenter__(self) -> type:
            return type(asyncio.get_running_loop())

        async def __aexit__(self, *exc: object) -> None:
            return None

    with Background(Service()) as loop_type:
        assert loop_type is uvloop.Loop


def test_new_event_loop_is_a_fresh_loop_each_time():
    first, second = new_event_loop(), new_event_loop()
    try:
        assert first is not second
    finally:
        first.close()
        second.close()


def test_request_time_changes_with_the_second_and_not_within_it():
    """``requestTime`` in CLF as Powertools' captures write it (``09/Feb/2024:18:22:59 +0000``),
    formatted once a second: every millisecond of a second gives that second's string."""
    second = calendar.timegm((2026, 11, 25, 18, 0, 59))
    assert events.clf_time(second * 1000) == "25/Nov/2026:18:00:59 +0000"
    assert events.clf_time(second * 1000 + 999) == "25/Nov/2026:18:00:59 +0000"
    assert events.clf_time(second * 1000 + 1000) == "25/Nov/2026:18:01:00 +0000"


def test_request_and_message_ids_are_aws_shaped_and_unique():
    """URL-safe base64 of 11 bytes ending in ``=``, as in the captures (``BFaT_fALIAMCKug=``)."""
    ids = [events.new_request_id() for _ in range(5000)]
    ids += [events.new_event_message_id() for _ in range(5000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{15}=", value) for value in ids)
    assert len(set(ids)) == len(ids)
