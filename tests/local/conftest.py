"""Fixtures of the gateway tests: gateways on free loopback ports, a recorder of the events
handlers receive, and a real boto3 management API client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from local.background import Background
from local.gateway import AccessRecord, Gateway, GatewaySettings
from tests.local.gateway_support import Recorder


@pytest.fixture
def over_1024_files() -> Iterator[None]:
    """1030 more files open in this process while the test runs, so that whatever it opens next
    is numbered 1024 or more (``select.select()`` refuses those); skipped where the file limit
    does not allow that many."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1100:
        pytest.skip(f"the file limit ({soft}) keeps every file below 1024 here")
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        yield
    finally:
        for fd in filler:
            os.close(fd)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def access_log() -> list[AccessRecord]:
    return []


@pytest.fixture
def start_gateway(access_log: list[AccessRecord]) -> Iterator[Callable[..., Gateway]]:
    """``start_gateway(routes, **settings)``: a running gateway on a free port, stopped after."""
    running: list[Background[Gateway]] = []

    def start(routes: Any, **settings: Any) -> Gateway:
        settings.setdefault("access_log", access_log.append)
        background = Background(Gateway(routes, GatewaySettings(port=0, **settings)))
        gateway = background.__enter__()
        running.append(background)
        return gateway

    yield start
    for background in reversed(running):
        background.__exit__(None, None, None)


@pytest.fixture
def management_client() -> Callable[[Gateway], Any]:
    """A real boto3 ``apigatewaymanagementapi`` client for a gateway."""

    def client(gateway: Gateway) -> Any:
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=gateway.management_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )

    return client
