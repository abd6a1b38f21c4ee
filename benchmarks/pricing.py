"""Public AWS prices (us-east-1, on-demand, 2024 list prices) and the cost model of a chat message.

Prices, as published on the services' pricing pages:

- API Gateway WebSocket: $1.00 per million messages (first billion a month; messages are metered
  in 32 KB increments, in both directions) and $0.25 per million connection minutes.
- Lambda: $0.20 per million requests and $0.0000133334 per GB-second on arm64.
- DynamoDB on-demand, after the November 2024 price reduction: $0.625 per million write request
  units and $0.125 per million read request units.
- SQS FIFO: $0.50 per million requests (64 KB increments).

The model prices the real-time channel only (what this stack runs); the RAG stack's own Lambda,
its SQS receives and deletes and the answer's LLM calls are not included. The number of AWS
calls per event is MEASURED (``benchmarks.aws_calls``); the rest are assumptions, stated here.

Write units follow from the items each write request touches (``event_writes``), as DynamoDB
bills them (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
and .../GSI.html#GSI.ThroughputConsiderations.Writes): an item up to 1 KB costs 1 unit, 2 in a
transaction, and a write that creates, deletes or changes a projected attribute of a row also
writes its ``userId-index`` item (1 unit). The model is checked against the measured calls: a
write request the code makes and the model does not know is an error, never priced at nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from runtime import schema

PER_MILLION = 1_000_000

API_GATEWAY_MESSAGE_USD = 1.00 / PER_MILLION
API_GATEWAY_CONNECTION_MINUTE_USD = 0.25 / PER_MILLION
LAMBDA_REQUEST_USD = 0.20 / PER_MILLION
LAMBDA_ARM64_GB_SECOND_USD = 0.0000133334
DYNAMODB_WRITE_REQUEST_UNIT_USD = 0.625 / PER_MILLION
DYNAMODB_READ_REQUEST_UNIT_USD = 0.125 / PER_MILLION
SQS_FIFO_REQUEST_USD = 0.50 / PER_MILLION

PRICES_USD_PER_MILLION = {
    "api_gateway_websocket_messages": 1.00,
    "api_gateway_connection_minutes": 0.25,
    "lambda_requests": 0.20,
    "lambda_arm64_gb_seconds_per_million_gb_s": 13.3334,
    "dynamodb_on_demand_write_request_units": 0.625,
    "dynamodb_on_demand_read_request_units": 0.125,
    "sqs_fifo_requests": 0.50,
}
PRICES_SOURCE = "AWS public list prices, us-east-1, 2024 (DynamoDB after the Nov 2024 reduction)"


WRITE_OPERATIONS = (
    "dynamodb.PutItem",
    "dynamodb.UpdateItem",
    "dynamodb.DeleteItem",
    "dynamodb.TransactWriteItems",
    "dynamodb.BatchWriteItem",
)
READ_OPERATIONS = ("dynamodb.GetItem", "dynamodb.Query", "dynamodb.BatchGetItem")


@dataclass(frozen=True)
class Assumptions:
    """What the cost model cannot measure locally."""

    lambda_memory_mb: int
    billed_ms_per_invocation: float = 30.0  # two in-region AWS calls, warm container
    chat_messages_per_session: int = 10  # one connect/authorize/disconnect per 10 messages
    connection_minutes_per_chat_message: float = 1.0  # a 10-minute session with 10 messages
    # Items under 1 KB: one unit per item written, two when the write is transactional.
    item_write_units: int = 1
    transactional_item_write_units: int = 2
    # userId-index projects only connectionId, connectedAt and ttl: a row's index item is
    # written when the row is created or deleted, or its ttl moves (not on every touch).
    index_item_write_units: int = 1
    ttl_step_seconds: int = schema.TTL_STEP_SECONDS
    # One connection per user, so every $disconnect also deletes the user's connection set.
    disconnects_closing_the_users_last_connection: float = 1.0
    read_units_per_read: float = 1.0  # a GetItem or Query page of items under 4 KB, rounded up
    api_gateway_messages_per_chat_message: int = 2  # the inbound frame + the `accepted` frame
    streamed_answer_chunks: int = 20  # typing on + chunks + done + typing off per answer

    @property
    def session_seconds(self) -> float:
        return self.chat_messages_per_session * self.connection_minutes_per_chat_message * 60

    @property
    def touches_moving_ttl(self) -> float:
        """The share of touches that move ``ttl`` into the next step, at most: a touch rewrites
        the index item at most once a step, and the session holds this many steps per touch
        (one message a minute on 60 s steps: every touch, as if messages never came in bursts).
        """
        steps = self.session_seconds / self.ttl_step_seconds
        return min(1.0, steps / self.chat_messages_per_session)


@dataclass(frozen=True)
class ItemWrite:
    """One item one write request writes, and whether that also writes its index item."""

    item: str
    transactional: bool = False
    index_item_writes: float = 0.0  # a share when only some requests write it

    def units(self, assumptions: Assumptions) -> float:
        own = (
            assumptions.transactional_item_write_units
            if self.transactional
            else assumptions.item_write_units
        )
        return own + self.index_item_writes * assumptions.index_item_write_units


@dataclass(frozen=True)
class WriteRequest:
    """One write call as the benchmark counts it (``dynamodb.<Operation>``) and its items."""

    operation: str
    items: tuple[ItemWrite, ...]
    share: float = 1.0  # of the events that make this request

    def units(self, assumptions: Assumptions) -> float:
        return self.share * sum(item.units(assumptions) for item in self.items)


def event_writes(assumptions: Assumptions) -> dict[str, tuple[WriteRequest, ...]]:
    """The write requests of each event (``runtime/connections.py``), item by item."""
    row_touch = ItemWrite("connection row", index_item_writes=assumptions.touches_moving_ttl)
    return {
        "connect": (
            # The client instance's item: its latest connection (no index: it has no userId).
            WriteRequest("dynamodb.PutItem", (ItemWrite("client instance's connection"),)),
            WriteRequest(
                "dynamodb.TransactWriteItems",
                (
                    ItemWrite("connection row (Put)", transactional=True, index_item_writes=1),
                    ItemWrite("user's connection set (Update)", transactional=True),
                ),
            ),
        ),
        "chat_message": (WriteRequest("dynamodb.UpdateItem", (row_touch,)),),
        "disconnect": (
            WriteRequest(
                "dynamodb.DeleteItem", (ItemWrite("connection row", index_item_writes=1),)
            ),
            WriteRequest("dynamodb.UpdateItem", (ItemWrite("user's connection set"),)),
            WriteRequest(
                "dynamodb.DeleteItem",
                (ItemWrite("user's connection set, emptied"),),
                share=assumptions.disconnects_closing_the_users_last_connection,
            ),
        ),
    }


@dataclass(frozen=True)
class CallCounts:
    """Measured AWS calls per event, by operation."""

    connect: dict[str, int]
    disconnect: dict[str, int]
    chat_message: dict[str, int]


def _calls(counts: dict[str, int], *operations: str) -> int:
    return sum(counts.get(operation, 0) for operation in operations)


def write_units_per_event(calls: CallCounts, assumptions: Assumptions) -> dict[str, float]:
    """Write units of each event, after checking the model makes the measured write calls."""
    units = {}
    for event, requests in event_writes(assumptions).items():
        measured: dict[str, int] = getattr(calls, event)
        modelled = Counter(request.operation for request in requests)
        made = {op: n for op, n in measured.items() if op in WRITE_OPERATIONS}
        if made != dict(modelled):
            raise ValueError(
                f"{event} made the write calls {made}, but benchmarks/pricing.py's "
                f"event_writes models {dict(modelled)}: update the model to what "
                "runtime/connections.py writes"
            )
        units[event] = round(sum(request.units(assumptions) for request in requests), 3)
    return units


def lambda_gb_seconds(seconds: float, memory_mb: float) -> float:
    """What Lambda bills ``seconds`` of a function with ``memory_mb`` as (GB = 1024 MB)."""
    return seconds * memory_mb / 1024


def cost_per_million_chat_messages(calls: CallCounts, assumptions: Assumptions) -> dict[str, Any]:
    """USD per million chat messages, by line item, from measured calls and the assumptions."""
    per_session = 1.0 / assumptions.chat_messages_per_session
    event_units = write_units_per_event(calls, assumptions)
    invocations = 1 + 3 * per_session  # message handler + (authorizer, $connect, $disconnect)
    gb_seconds = lambda_gb_seconds(
        invocations * assumptions.billed_ms_per_invocation / 1000, assumptions.lambda_memory_mb
    )
    write_units = event_units["chat_message"] + per_session * (
        event_units["connect"] + event_units["disconnect"]
    )
    reads = _calls(calls.chat_message, *READ_OPERATIONS) + per_session * (
        _calls(calls.connect, *READ_OPERATIONS) + _calls(calls.disconnect, *READ_OPERATIONS)
    )
    read_units = assumptions.read_units_per_read * reads
    sqs_requests = _calls(calls.chat_message, "sqs.SendMessage")
    items = {
        "api_gateway_messages": assumptions.api_gateway_messages_per_chat_message
        * API_GATEWAY_MESSAGE_USD,
        "api_gateway_connection_minutes": assumptions.connection_minutes_per_chat_message
        * API_GATEWAY_CONNECTION_MINUTE_USD,
        "lambda_requests": invocations * LAMBDA_REQUEST_USD,
        "lambda_gb_seconds": gb_seconds * LAMBDA_ARM64_GB_SECOND_USD,
        "dynamodb_writes": write_units * DYNAMODB_WRITE_REQUEST_UNIT_USD,
        "dynamodb_reads": read_units * DYNAMODB_READ_REQUEST_UNIT_USD,
        "sqs_requests": sqs_requests * SQS_FIFO_REQUEST_USD,
    }
    per_million = {name: round(value * PER_MILLION, 4) for name, value in items.items()}
    total = round(sum(per_million.values()), 4)
    answer_frames = assumptions.streamed_answer_chunks + 3
    answer = round(answer_frames * API_GATEWAY_MESSAGE_USD * PER_MILLION, 4)
    return {
        "usd_per_million_chat_messages": total,
        "line_items_usd": per_million,
        "streamed_answer_messages_usd": answer,
        "with_streamed_answer_usd": round(total + answer, 4),
        "per_chat_message": {
            "lambda_invocations": round(invocations, 3),
            "lambda_gb_seconds": round(gb_seconds, 6),
            "dynamodb_write_units": round(write_units, 3),
            "touches_moving_ttl": round(assumptions.touches_moving_ttl, 3),
            "dynamodb_read_units": round(read_units, 3),
            "sqs_requests": sqs_requests,
            "api_gateway_messages": assumptions.api_gateway_messages_per_chat_message,
            "streamed_answer_messages": answer_frames,
        },
        "dynamodb_write_units_per_event": event_units,
        "assumptions": asdict(assumptions),
        "prices_usd_per_million": PRICES_USD_PER_MILLION,
        "prices_source": PRICES_SOURCE,
    }
