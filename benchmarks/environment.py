"""The AWS side of a benchmark: fake credentials, a moto server on loopback and its resources.

Nothing here can reach real AWS: the credentials are fake and every endpoint is 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3

from local.aws import create_stack_resources, fake_credentials
from runtime import schema

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
TABLE_NAME = "rag-websocket-bench-connections"
QUEUE_NAME = "rag-websocket-bench-chat.fifo"
LOOPBACK = "127.0.0.1"

FAKE_CREDENTIALS = fake_credentials(REGION)
# Variables that could point a benchmark at a real account or a stray endpoint.
_UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def base_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with fake credentials, no profile and ``extra`` on top."""
    env = {name: value for name, value in os.environ.items() if name not in _UNSET}
    env.update(FAKE_CREDENTIALS)
    env.update(extra or {})
    return env


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set variables in ``os.environ`` (and drop the stray ones) for the block, then restore."""
    saved = {name: os.environ.get(name) for name in (*values, *_UNSET)}
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass(frozen=True)
class AwsResources:
    """The connections table and chat queue, as the handlers' environment names them."""

    endpoint_url: str | None
    table_name: str
    queue_url: str

    def handler_environment(self, **overrides: str) -> dict[str, str]:
        """Fake credentials plus what the handlers read at cold start."""
        env = dict(FAKE_CREDENTIALS)
        if self.endpoint_url is not None:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        env[schema.ENV_CONNECTIONS_TABLE] = self.table_name
        env[schema.ENV_CHAT_QUEUE_URL] = self.queue_url
        env["POWERTOOLS_METRICS_NAMESPACE"] = schema.METRICS_NAMESPACE
        env["POWERTOOLS_SERVICE_NAME"] = schema.SERVICE_NAME
        env.update(overrides)
        return env


def create_resources(endpoint_url: str | None) -> AwsResources:
    """The connections table and the chat FIFO queue (and its DLQ), in moto at ``endpoint_url``.

    With ``endpoint_url=None`` they are created wherever boto3 points (``mock_aws``).
    """
    options: dict[str, Any] = {"region_name": REGION}
    if endpoint_url is not None:
        options.update(
            endpoint_url=endpoint_url,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
    queues = create_stack_resources(
        boto3.client("dynamodb", **options),
        boto3.client("sqs", **options),
        TABLE_NAME,
        QUEUE_NAME,
    )
    return AwsResources(endpoint_url, TABLE_NAME, queues.queue_url)


@contextmanager
def moto_server() -> Iterator[AwsResources]:
    """moto's server on a free loopback port, holding the table and the queue."""
    from moto.server import ThreadedMotoServer

    # moto's server logs every request through werkzeug, even with verbose=False.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        with patched_environ(FAKE_CREDENTIALS):
            yield create_resources(f"http://{LOOPBACK}:{port}")
    finally:
        server.stop()
