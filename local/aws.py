"""Embedded AWS: moto's server in its own process (``local.moto_process``) on a free loopback
port, with this stack's connections table and chat FIFO queue + DLQ created from
``runtime/schema.py`` — the same definitions the Pulumi components use.

Handlers reach it through ``AWS_ENDPOINT_URL`` and fake credentials (``environment()``); the
shared config and credentials files are masked so no profile can point anywhere real.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from local.gateway.models import LOCAL_REGION
from local.moto_process import PLAIN_FLAG, READY_LINE
from runtime import aws, schema

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

LOCAL_TABLE_NAME = "rag-websocket-local-connections"
LOCAL_QUEUE_NAME = "rag-websocket-local-chat.fifo"
MOTO_READY_TIMEOUT_SECONDS = 30.0
MOTO_STOP_TIMEOUT_SECONDS = 5.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# moto on a busy laptop can take seconds where DynamoDB takes milliseconds, but a handler makes
# a call only while its worst case (2 attempts of connect + read, runtime.aws) fits the function
# timeout: 2 s reads keep that at 7 s, inside the stack's default 10 s.
LOCAL_AWS_READ_TIMEOUT_SECONDS = 2
FAKE_SECRET = "testing"  # noqa: S105 - moto accepts any credentials; these are not secrets
_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2})
# MessageSender retries 429s itself, as with the Lambda runtime's client (runtime/aws.py).
_MANAGEMENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=10,
    retries={"mode": "standard", "total_max_attempts": 1},
    max_pool_connections=aws.MANAGEMENT_MAX_CONNECTIONS,
)


def fake_credentials(region: str) -> dict[str, str]:
    """The variables that give boto3 credentials moto accepts, and ``region``, with no file or
    profile needed: for any process pointed at the embedded AWS (local mode, the benchmarks)."""
    return {
        "AWS_ACCESS_KEY_ID": FAKE_SECRET,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_SESSION_TOKEN": FAKE_SECRET,
        "AWS_SECURITY_TOKEN": FAKE_SECRET,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


@dataclass(frozen=True)
class AwsResources:
    """Where the embedded AWS listens and what was created in it."""

    endpoint_url: str
    region: str
    table_name: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str

    def environment(self) -> dict[str, str | None]:
        """What points boto3 (in any handler) at moto; ``None`` removes a variable."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            **fake_credentials(self.region),
            "AWS_PROFILE": None,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            schema.ENV_AWS_READ_TIMEOUT: str(LOCAL_AWS_READ_TIMEOUT_SECONDS),
        }

    def _session(self) -> boto3.session.Session:
        """Fake credentials given explicitly: these clients ignore the process environment."""
        return boto3.session.Session(
            aws_access_key_id=FAKE_SECRET,
            aws_secret_access_key=FAKE_SECRET,
            aws_session_token=FAKE_SECRET,
            region_name=self.region,
        )

    def dynamodb(self) -> DynamoDBClient:
        return self._session().client(
            "dynamodb", endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG
        )

    def sqs(self) -> SQSClient:
        return self._session().client("sqs", endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG)

    def management_api(self, endpoint_url: str) -> ApiGatewayManagementApiClient:
        """A management API client for a local gateway (``Gateway.management_endpoint``)."""
        return self._session().client(
            "apigatewaymanagementapi", endpoint_url=endpoint_url, config=_MANAGEMENT_CONFIG
        )


@dataclass(frozen=True)
class StackQueues:
    """The chat FIFO queue and its dead-letter queue, as ``create_stack_resources`` made them."""

    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str


def dead_letter_queue_name(queue_name: str) -> str:
    """The dead-letter queue's name for the FIFO queue ``queue_name``, as the stack names it
    (``components.chat_queue``)."""
    stem = queue_name.removesuffix(schema.FIFO_SUFFIX)
    return f"{stem}{schema.DLQ_NAME_SUFFIX}{schema.FIFO_SUFFIX}"


def create_stack_resources(
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    table_name: str,
    queue_name: str,
) -> StackQueues:
    """The stack's AWS resources in an emulator (moto), from ``runtime/schema.py``'s
    definitions as the Pulumi components use them: the connections table with TTL on, the
    chat FIFO queue and its dead-letter queue (named after it: ``dead_letter_queue_name``).
    Local mode, the benchmarks and the tests all create them here."""
    # schema.py stays free of boto3 types: its plain dicts are passed through as they are.
    table: Any = schema.table_definition(table_name)
    dynamodb.create_table(**table)
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL_ATTRIBUTE},
    )
    dlq_url: str = sqs.create_queue(
        QueueName=dead_letter_queue_name(queue_name),
        Attributes={
            "FifoQueue": "true",
            "MessageRetentionPeriod": str(schema.DLQ_RETENTION_SECONDS),
        },
    )["QueueUrl"]
    attributes: Any = schema.fifo_queue_attributes(_queue_arn(sqs, dlq_url))
    queue_url: str = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
    return StackQueues(queue_url, _queue_arn(sqs, queue_url), dlq_url)


def _queue_arn(sqs: SQSClient, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


class EmbeddedAws:
    """Starts moto in its own process and creates the table and queues; ``stop()`` ends it.

    Each start is a new process, so it begins empty, and several can run side by side.
    ``fast_path=False`` serves moto patched like AWS but without ``local.moto_process``'s
    speed-ups: the tests compare its answers with the fast path's, the benchmarks its CPU.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = LOCAL_REGION,
        table_name: str = LOCAL_TABLE_NAME,
        queue_name: str = LOCAL_QUEUE_NAME,
        *,
        fast_path: bool = True,
    ) -> None:
        self._host = host
        self._port = port
        self._region = region
        self._table_name = table_name
        self._queue_name = queue_name
        self._fast_path = fast_path
        self._process: subprocess.Popen[str] | None = None
        self.resources: AwsResources | None = None

    def start(self) -> AwsResources:
        try:
            process, endpoint_url = self._start_process()
            self.resources = self._create(process, endpoint_url)
        except BaseException:
            self.stop()
            raise
        return self.resources

    def _start_process(self) -> tuple[subprocess.Popen[str], str]:
        """Bind the port here (so it is known and a busy one fails here), serve it there."""
        with socket.create_server((self._host, self._port)) as sock:
            host, port = sock.getsockname()[:2]
            environment = dict(os.environ)
            environment["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(PROJECT_ROOT), environment.get("PYTHONPATH")])
            )
            command = [sys.executable, "-m", "local.moto_process", "--fd", str(sock.fileno())]
            if not self._fast_path:
                command.append(PLAIN_FLAG)
            self._process = subprocess.Popen(  # noqa: S603 - this interpreter, our module
                command,
                pass_fds=[sock.fileno()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environment,
                text=True,
            )
        return self._process, f"http://{host}:{port}"

    @staticmethod
    def _wait_until_ready(process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        # A selector, not select.select(): that refuses a pipe numbered 1024 or more, which a
        # process holding many connections (a test run, raised open-file limits) gets.
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            readable = selector.select(MOTO_READY_TIMEOUT_SECONDS)
        line = process.stdout.readline().strip() if readable else ""
        if line != READY_LINE:
            raise RuntimeError(
                f"moto did not start in {MOTO_READY_TIMEOUT_SECONDS:.0f} s "
                f"(exit code {process.poll()}); its errors are on stderr above"
            )

    def _create(self, process: subprocess.Popen[str], endpoint_url: str) -> AwsResources:
        draft = AwsResources(endpoint_url, self._region, self._table_name, "", "", "")
        # The clients are built while moto loads in its process: start-up overlaps.
        dynamodb, sqs = draft.dynamodb(), draft.sqs()
        self._wait_until_ready(process)
        queues = create_stack_resources(dynamodb, sqs, self._table_name, self._queue_name)
        return AwsResources(
            endpoint_url=endpoint_url,
            region=self._region,
            table_name=self._table_name,
            queue_url=queues.queue_url,
            queue_arn=queues.queue_arn,
            dead_letter_queue_url=queues.dead_letter_queue_url,
        )

    @property
    def pid(self) -> int | None:
        """moto's process, while it runs (the benchmarks read its CPU time)."""
        return None if self._process is None else self._process.pid

    def stop(self) -> None:
        """Close moto's stdin (it stops serving and exits); kill it if it does not."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(MOTO_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> AwsResources:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
