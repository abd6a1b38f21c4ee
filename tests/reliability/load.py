"""Load with nothing lost: many ``ChatClient``s against the local stack, every message counted.

The stack runs in a process of its own (``benchmarks.local_stack``, moto in another); the
clients and the responder run here. The responder is this project's
``ChatQueueConsumer`` with a fast responder that records every message it takes off the chat
queue and streams a short answer through ``MessageSender``. Every client connects first (all
connections are open at once), then sends its share of the messages one after another (send,
wait for ``accepted``, wait for the whole answer): as many messages in flight as clients, or
``LoadPlan.in_flight``.

What is checked, per message: accepted by the server, taken off the queue exactly once, and its
whole answer (every chunk, then ``done``) assembled by the client; at the end the queue and its
dead-letter queue are empty and no connection row is left.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.local_stack import RunningStack, local_stack
from client import ChatClient, ClientConfig
from local.aws import AwsResources
from local.responder import ChatQueueConsumer
from local.tokens import DevTokens
from runtime import schema
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore
from runtime.sender import MessageSender

# Below API Gateway's 500 new connections per second, which the local gateway enforces too.
CONNECT_RATE_PER_SECOND = 0.8 * schema.NEW_CONNECTIONS_PER_SECOND
CONNECT_CONCURRENCY = 50
ROWS_GONE_TIMEOUT_SECONDS = 120.0
# Generous, so that a loaded machine never makes a client re-send or reconnect: the figures
# then count what the system did, not the client's recovery. (Re-sends are deduplicated by the
# FIFO queue anyway; DESIGN §3.)
LOAD_CLIENT_CONFIG = ClientConfig(
    proxy=None,
    open_timeout=60.0,
    accept_timeout=float(schema.SQS_DEDUPLICATION_WINDOW_SECONDS),
    resend_after=float(schema.SQS_DEDUPLICATION_WINDOW_SECONDS),
    pong_timeout=120.0,
)


@dataclass(frozen=True)
class LoadPlan:
    clients: int
    messages: int  # in total, spread evenly over the clients
    deadline_seconds: float
    # At most this many messages in flight (sent, not yet answered) across all clients: moto's
    # SQS model costs grow with the number of messages in the queue, and past a few hundred
    # that, not this project's code, is what a run would measure. None: one per client.
    in_flight: int | None = None
    chunks_per_answer: int = 2
    responder_workers: int = 16
    # The per-connection rate limit stays on, set above what one client sends in a minute.
    messages_per_minute: int = 10_000

    def __post_init__(self) -> None:
        if self.messages % self.clients:
            raise ValueError(f"messages ({self.messages}) must be a multiple of clients")

    @property
    def per_client(self) -> int:
        return self.messages // self.clients


@dataclass
class LoadReport:
    clients_connected: int = 0
    messages_sent: int = 0
    messages_accepted: int = 0
    answers_complete: int = 0
    chunks_delivered: int = 0  # chat_response frames of complete answers, ``done`` included
    duplicate_chunks_dropped: int = 0
    taken_off_queue: Counter[str] = field(default_factory=Counter)
    streams_failed: int = 0
    queue_left: int = -1
    dead_letter_left: int = -1
    rows_left: int = -1
    seconds: float = 0.0
    sent_ids: set[str] = field(default_factory=set)

    @property
    def lost(self) -> int:
        """Messages sent that were never taken off the queue."""
        return len(self.sent_ids - set(self.taken_off_queue))

    @property
    def duplicated(self) -> int:
        """Extra copies taken off the queue (a message queued twice, or delivered twice)."""
        return sum(count - 1 for count in self.taken_off_queue.values() if count > 1)

    def figures(self) -> dict[str, Any]:
        return {
            "clients": self.clients_connected,
            "messages_sent": self.messages_sent,
            "messages_accepted": self.messages_accepted,
            "messages_queued_once": sum(1 for c in self.taken_off_queue.values() if c == 1),
            "answers_complete": self.answers_complete,
            "answer_chunks_delivered": self.chunks_delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "duplicate_chunks_dropped_by_clients": self.duplicate_chunks_dropped,
            "streams_failed": self.streams_failed,
            "queue_left": self.queue_left,
            "dead_letter_queue_left": self.dead_letter_left,
            "connection_rows_left": self.rows_left,
            "seconds": round(self.seconds, 1),
        }


def answer_chunks(client_message_id: str, chunks: int) -> list[str]:
    return [f"part {n} of the answer to {client_message_id}. " for n in range(chunks)]


class RecordingResponder:
    """Streams a short answer to each message and counts what it took off the queue."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.taken: Counter[str] = Counter()
        self.streams_failed = 0
        self._lock = threading.Lock()

    def __call__(self, message: Mapping[str, Any], sender: MessageSender) -> None:
        client_message_id = str(message["clientMessageId"])
        with self._lock:
            self.taken[client_message_id] += 1
        result = sender.stream(
            str(message["connectionId"]),
            str(message["conversationId"]),
            answer_chunks(client_message_id, self.chunks),
            user_id=str(message["userId"]),
            metadata={"inReplyTo": client_message_id},
        )
        if not result:
            # Not raised: a redelivery would count as a duplicate and hide the real failure.
            with self._lock:
                self.streams_failed += 1


class _Pacer:
    """Spaces connection attempts ``1 / rate`` seconds apart."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = asyncio.get_running_loop().time()
            delay = max(0.0, self._next - now)
            self._next = max(now, self._next) + self._interval
        await asyncio.sleep(delay)


async def _run_client(
    index: int,
    plan: LoadPlan,
    stack: RunningStack,
    tokens: DevTokens,
    pacer: _Pacer,
    connecting: asyncio.Semaphore,
    everyone_connected: asyncio.Event,
    in_flight: asyncio.Semaphore,
    report: LoadReport,
) -> None:
    user = f"load-user-{index}"
    conversation = f"load-conversation-{index}"
    async with ChatClient(LOAD_CLIENT_CONFIG) as client:
        async with connecting:
            await pacer.wait()
            await client.connect(stack.ws_url, lambda: tokens.issue(user))
        report.clients_connected += 1
        if report.clients_connected == plan.clients:
            everyone_connected.set()
        await everyone_connected.wait()  # all connections open at once: concurrent clients
        for n in range(plan.per_client):
            client_message_id = f"load-{index}-{n}"
            async with in_flight:
                report.sent_ids.add(client_message_id)
                report.messages_sent += 1
                await client.send_chat(
                    conversation, f"question {n} from {user}", client_message_id=client_message_id
                )
                await client.wait_accepted(client_message_id)
                report.messages_accepted += 1
                answer = await client.receive_answer(conversation)
            expected = answer_chunks(client_message_id, plan.chunks_per_answer)
            assert answer.metadata.get("inReplyTo") == client_message_id, answer.metadata
            assert answer.content == "".join(expected), answer.content
            assert [c.sequence for c in answer.chunks] == list(range(len(expected) + 1))
            report.answers_complete += 1
            report.chunks_delivered += len(answer.chunks)
        report.duplicate_chunks_dropped += client.duplicate_chunks_dropped


def _queue_depth(aws: AwsResources, queue_url: str) -> int:
    attributes = aws.sqs().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _rows(aws: AwsResources) -> int:
    """Every item of the connections table that ``$disconnect`` must remove, expired or not (a
    raw Scan, no TTL filter): the connection rows and the users' items. A client instance's
    item (``INSTANCE#``) stays for its TTL, by design."""
    paginator = aws.dynamodb().get_paginator("scan")
    return sum(
        int(page.get("Count", 0))
        for page in paginator.paginate(
            TableName=aws.table_name,
            Select="COUNT",
            FilterExpression="NOT begins_with(PK, :instance)",
            ExpressionAttributeValues={":instance": {"S": schema.INSTANCE_PREFIX}},
        )
    )


def _wait_for_no_rows(aws: AwsResources) -> int:
    deadline = time.monotonic() + ROWS_GONE_TIMEOUT_SECONDS
    while (rows := _rows(aws)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return rows


async def _drive(
    plan: LoadPlan, stack: RunningStack, tokens: DevTokens, report: LoadReport
) -> None:
    pacer = _Pacer(CONNECT_RATE_PER_SECOND)
    connecting = asyncio.Semaphore(CONNECT_CONCURRENCY)
    everyone_connected = asyncio.Event()
    in_flight = asyncio.Semaphore(plan.in_flight or plan.clients)
    async with asyncio.timeout(plan.deadline_seconds), asyncio.TaskGroup() as group:
        for index in range(plan.clients):
            group.create_task(
                _run_client(
                    index,
                    plan,
                    stack,
                    tokens,
                    pacer,
                    connecting,
                    everyone_connected,
                    in_flight,
                    report,
                )
            )


def run_load(plan: LoadPlan, work_dir: Path) -> LoadReport:
    """Run ``plan`` against a fresh stack in its own process; the figures of what happened."""
    report = LoadReport()
    environment = {schema.ENV_MESSAGES_PER_MINUTE: str(plan.messages_per_minute)}
    started = time.perf_counter()
    # API Gateway's integration timeout rather than the functions' 10 s, as the gateway's
    # default: on a loaded 2-core machine, 100 handshakes at once can outwait a Lambda's budget.
    with local_stack(
        work_dir, environment, function_timeout_seconds=schema.INTEGRATION_TIMEOUT_SECONDS
    ) as stack:
        tokens = DevTokens.load_or_create(stack.state_dir)  # the key local_stack() created
        aws = stack.aws
        store = ConnectionStore(StoreConfig(aws.table_name), client=aws.dynamodb())
        responder = RecordingResponder(plan.chunks_per_answer)
        sender = MessageSender(
            store,
            stack.management_endpoint,
            client=aws.management_api(stack.management_endpoint),
            max_workers=plan.responder_workers,
            # A client that reconnects under load gets the rest of its answer on the new socket.
            redirect_gone_to_user=True,
        )
        consumer = ChatQueueConsumer(
            aws.sqs(), aws.queue_url, responder, sender, max_workers=plan.responder_workers
        )
        consumer.start()
        try:
            asyncio.run(_drive(plan, stack, tokens, report))
        finally:
            consumer.stop()
            sender.close()
        report.taken_off_queue = responder.taken
        report.streams_failed = responder.streams_failed
        report.rows_left = _wait_for_no_rows(aws)
        report.queue_left = _queue_depth(aws, aws.queue_url)
        report.dead_letter_left = _queue_depth(aws, aws.dead_letter_queue_url)
    report.seconds = time.perf_counter() - started
    return report
