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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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


@dataclass(frozen=True)
class Assumptions:
    """What the cost model cannot measure locally."""

    lambda_memory_mb: int
    billed_ms_per_invocation: float = 30.0  # two in-region AWS calls, warm container
    chat_messages_per_session: int = 10  # one connect/authorize/disconnect per 10 messages
    connection_minutes_per_chat_message: float = 1.0  # a 10-minute session with 10 messages
    # Projection ALL: an UpdateItem/PutItem/DeleteItem that changes projected attributes also
    # writes the userId-index item, a second write request unit (items < 1 KB).
    write_units_per_item_write: int = 2
    read_units_per_count_query: float = 1.0  # $connect's COUNT query on userId-index, rounded up
    api_gateway_messages_per_chat_message: int = 2  # the inbound frame + the `accepted` frame
    streamed_answer_chunks: int = 20  # typing on + chunks + done + typing off per answer


@dataclass(frozen=True)
class CallCounts:
    """Measured AWS calls per event, by operation."""

    connect: dict[str, int]
    disconnect: dict[str, int]
    chat_message: dict[str, int]


def _calls(counts: dict[str, int], *operations: str) -> int:
    return sum(counts.get(operation, 0) for operation in operations)


def cost_per_million_chat_messages(calls: CallCounts, assumptions: Assumptions) -> dict[str, Any]:
    """USD per million chat messages, by line item, from measured calls and the assumptions."""
    per_session = 1.0 / assumptions.chat_messages_per_session
    writes = ("dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem")
    session_calls = {
        name: calls.connect.get(name, 0) + calls.disconnect.get(name, 0)
        for name in {*calls.connect, *calls.disconnect}
    }
    invocations = 1 + 3 * per_session  # message handler + (authorizer, $connect, $disconnect)
    gb_seconds = (
        invocations
        * assumptions.billed_ms_per_invocation
        / 1000
        * assumptions.lambda_memory_mb
        / 1024
    )
    write_units = assumptions.write_units_per_item_write * (
        _calls(calls.chat_message, *writes) + per_session * _calls(session_calls, *writes)
    )
    read_units = assumptions.read_units_per_count_query * per_session * _calls(
        session_calls, "dynamodb.Query"
    ) + _calls(calls.chat_message, "dynamodb.Query", "dynamodb.GetItem")
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
            "dynamodb_read_units": round(read_units, 3),
            "sqs_requests": sqs_requests,
            "api_gateway_messages": assumptions.api_gateway_messages_per_chat_message,
            "streamed_answer_messages": answer_frames,
        },
        "assumptions": asdict(assumptions),
        "prices_usd_per_million": PRICES_USD_PER_MILLION,
        "prices_source": PRICES_SOURCE,
    }
