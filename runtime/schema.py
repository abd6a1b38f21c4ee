"""Names and limits shared by the handlers, the Pulumi components and the local gateway.

This module is the ONE place these facts are stated (DESIGN §2 and §4). It imports nothing
beyond the standard library so that every layer can read it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, TypeVar, get_args

# --- DynamoDB connections table (DESIGN §2) -------------------------------------------------

PARTITION_KEY: Final = "PK"
SORT_KEY: Final = "SK"
CONNECTION_PREFIX: Final = "CONNECTION#"

ATTR_CONNECTION_ID: Final = "connectionId"
ATTR_USER_ID: Final = "userId"
ATTR_CONNECTED_AT: Final = "connectedAt"  # epoch milliseconds
ATTR_LAST_SEEN_AT: Final = "lastSeenAt"  # epoch milliseconds
TTL_ATTRIBUTE: Final = "ttl"  # epoch SECONDS (DynamoDB TTL)
# Fixed-window rate limit in ONE UpdateItem: the counter's attribute name carries its window
# (``rate_<windowStartEpochSeconds>``), so a new window starts from zero without a read.
RATE_COUNTER_PREFIX: Final = "rate_"
# ``ttl`` moves in steps of this size (rounded up, never below the idle deadline), so most
# touches leave it, and with it the userId-index item, unchanged: one write unit, not two.
TTL_STEP_SECONDS: Final = 60

# One item per user (PK = SK = ``USER#<userId>``) holds the string set of its connection ids:
# the per-user connection limit is a condition on that set's size, written in the same
# transaction as the connection's row. It has no ``userId`` attribute, so the userId-index
# never holds it.
USER_PREFIX: Final = "USER#"
ATTR_CONNECTION_IDS: Final = "connectionIds"
# One item per client instance (PK = SK = ``INSTANCE#<userId>#<instanceId>``) holds the id of
# the connection that instance opened last (``connectionId``), so the next ``$connect`` of the
# same instance can close the one before: a socket the client gave up on may still be open at
# API Gateway (DESIGN §4). No ``userId`` attribute either: never in the userId-index.
INSTANCE_PREFIX: Final = "INSTANCE#"
# When ``$connect`` closes an instance's earlier connection, one item (PK = SK =
# ``REPLACED#<connectionId>``) names the connection that replaced it (``connectionId``): frames
# the closed one missed are redirected there, not to the user's other tabs.
REPLACED_PREFIX: Final = "REPLACED#"

USER_INDEX_NAME: Final = "userId-index"
USER_INDEX_HASH_KEY: Final = ATTR_USER_ID
USER_INDEX_RANGE_KEY: Final = SORT_KEY
# What the index's readers need besides its keys: the filter reads ``ttl``. ``lastSeenAt`` and
# the rate counters change on every touch and stay out, so a touch does not rewrite the index.
USER_INDEX_PROJECTED_ATTRIBUTES: Final = (ATTR_CONNECTION_ID, ATTR_CONNECTED_AT, TTL_ATTRIBUTE)

BILLING_MODE: Final = "PAY_PER_REQUEST"
# Every key attribute is a string ("S").
KEY_ATTRIBUTES: Final = (PARTITION_KEY, SORT_KEY, ATTR_USER_ID)


def connection_key(connection_id: str) -> str:
    """The PK/SK value of a connection's row: ``CONNECTION#<connectionId>``."""
    return f"{CONNECTION_PREFIX}{connection_id}"


def user_key(user_id: str) -> str:
    """The PK/SK value of a user's item (its connection ids): ``USER#<userId>``."""
    return f"{USER_PREFIX}{user_id}"


def instance_key(user_id: str, instance_id: str) -> str:
    """The PK/SK value of a client instance's item: ``INSTANCE#<userId>#<instanceId>``.

    An instance id has no ``#`` (``INSTANCE_ID_PATTERN``), so no two pairs share a key.
    """
    return f"{INSTANCE_PREFIX}{user_id}#{instance_id}"


def replaced_key(connection_id: str) -> str:
    """The PK/SK value of the item naming what replaced a connection: ``REPLACED#<id>``."""
    return f"{REPLACED_PREFIX}{connection_id}"


def table_definition(table_name: str) -> dict[str, object]:
    """Keyword arguments for DynamoDB ``CreateTable`` (used by local mode and tests).

    The Pulumi ``ConnectionTable`` component builds the same table from the same constants.
    """
    return {
        "TableName": table_name,
        "BillingMode": BILLING_MODE,
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"} for name in KEY_ATTRIBUTES
        ],
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": USER_INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": USER_INDEX_HASH_KEY, "KeyType": "HASH"},
                    {"AttributeName": USER_INDEX_RANGE_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(USER_INDEX_PROJECTED_ATTRIBUTES),
                },
            }
        ],
        "SSESpecification": {"Enabled": True},
    }


# --- API Gateway WebSocket limits (DESIGN §4) -----------------------------------------------

KIB: Final = 1024
MAX_MESSAGE_BYTES: Final = 128 * KIB  # a whole message; bigger closes the socket with 1009
MAX_FRAME_BYTES: Final = 32 * KIB  # one WebSocket frame
IDLE_TIMEOUT_SECONDS: Final = 10 * 60
MAX_CONNECTION_SECONDS: Final = 2 * 60 * 60
INTEGRATION_TIMEOUT_SECONDS: Final = 29
NEW_CONNECTIONS_PER_SECOND: Final = 500
MAX_AUTHORIZER_RESULT_BYTES: Final = 8 * KIB  # a Lambda authorizer's answer; bigger → 500
MAX_URL_CHARACTERS: Final = 4096  # the handshake URL


def connecting_cutoff_ms(at_ms: int) -> int:
    """A connection accepted (``connectedAt``) at or after this, as seen at ``at_ms``, may still
    be in its ``$connect``: API Gateway answers 410 for it until the upgrade completes, and the
    integration may take up to ``INTEGRATION_TIMEOUT_SECONDS``. A 410 for it does not prove it
    gone (``ConnectionStore.remove_gone``, ``$connect``'s retry of a replaced connection)."""
    return at_ms - INTEGRATION_TIMEOUT_SECONDS * 1000


CLOSE_GOING_AWAY: Final = 1001  # idle timeout / maximum duration reached
CLOSE_UNSUPPORTED_DATA: Final = 1003  # binary frame
CLOSE_MESSAGE_TOO_BIG: Final = 1009

# --- Routes and protocol (DESIGN §3) --------------------------------------------------------

ROUTE_SELECTION_EXPRESSION: Final = "$request.body.action"
ROUTE_CONNECT: Final = "$connect"
ROUTE_DISCONNECT: Final = "$disconnect"
ROUTE_DEFAULT: Final = "$default"
ROUTE_CHAT_MESSAGE: Final = "chat_message"
ROUTE_PING: Final = "ping"
MESSAGE_ROUTES: Final = (ROUTE_CHAT_MESSAGE, ROUTE_PING, ROUTE_DEFAULT)
# The four functions, each as the handler it runs (``package.module:function``; Lambda's handler
# setting writes the colon as a dot, ``lambda_handler``), and the function each route invokes.
# The Pulumi program and local mode both read them here.
FUNCTION_HANDLERS: Final = {
    "authorizer": "runtime.handlers.authorizer:handler",
    "connect": "runtime.handlers.connect:handler",
    "disconnect": "runtime.handlers.disconnect:handler",
    "message": "runtime.handlers.message:handler",
}
AUTHORIZER_FUNCTION: Final = "authorizer"
ROUTE_FUNCTIONS: Final = {
    ROUTE_CONNECT: "connect",
    ROUTE_DISCONNECT: "disconnect",
    **dict.fromkeys(MESSAGE_ROUTES, "message"),
}


def lambda_handler(function: str) -> str:
    """Lambda's ``Handler`` setting of ``function``: ``runtime.handlers.connect.handler``."""
    return FUNCTION_HANDLERS[function].replace(":", ".")


TOKEN_QUERY_PARAMETER: Final = "token"
AUTHORIZER_IDENTITY_SOURCE: Final = f"route.request.querystring.{TOKEN_QUERY_PARAMETER}"
# A client instance's own id, the same on every (re)connect of one client object: ``$connect``
# closes the connection the same instance opened before (``INSTANCE_PREFIX``). Optional.
INSTANCE_QUERY_PARAMETER: Final = "instanceId"
INSTANCE_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"

# --- Authentication -------------------------------------------------------------------------

MAX_TOKEN_BYTES: Final = 8 * KIB  # refused before parsing
ALLOWED_JWT_ALGORITHMS: Final = ("RS256", "ES256")
JWT_LEEWAY_SECONDS: Final = 30
# A JWKS fetch gives up after this long in all (connect, headers and body together), or sooner
# when the authorizer's own time runs out: it keeps AUTHORIZER_ANSWER_MARGIN_SECONDS to answer.
JWKS_TIMEOUT_SECONDS: Final = 2
AUTHORIZER_ANSWER_MARGIN_SECONDS: Final = 0.5
JWKS_CACHE_SECONDS: Final = 300
# An unknown `kid` refetches the key set at most once per this many seconds (PyJWKClient's
# cooldown), so tokens with made-up kids cannot make the authorizer hammer the issuer.
JWKS_REFRESH_COOLDOWN_SECONDS: Final = 30


def default_jwks_url(issuer: str) -> str:
    """Where an issuer publishes its keys when ``AUTH_JWKS_URL`` is unset.

    Only this URL drops the issuer's trailing ``/``: the ``iss`` claim is compared with the issuer
    exactly as configured (Auth0's and Azure AD's issuers end with ``/``).
    """
    return f"{issuer.rstrip('/')}/.well-known/jwks.json"


# --- SQS chat queue -------------------------------------------------------------------------

# SQS MessageGroupId / MessageDeduplicationId: 1-128 chars of a-z A-Z 0-9 and punctuation.
SQS_ID_MAX_LENGTH: Final = 128
SQS_ID_PATTERN: Final = r"^[\x21-\x7e]{1,128}$"
# What SendMessage accepts in a body: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
# #x10000-#x10FFFF, anything else fails with InvalidMessageContents. The queue message is JSON,
# which escapes every control character, so what text can still carry that SQS refuses is a
# lone surrogate or U+FFFE / U+FFFF.
SQS_UNQUEUEABLE_CHARACTERS: Final = r"[\ud800-\udfff\ufffe\uffff]"
DLQ_MAX_RECEIVE_COUNT: Final = 5
QUEUE_VISIBILITY_TIMEOUT_SECONDS: Final = 60
QUEUE_RETENTION_SECONDS: Final = 4 * 24 * 60 * 60
DLQ_RETENTION_SECONDS: Final = 14 * 24 * 60 * 60
FIFO_SUFFIX: Final = ".fifo"  # SQS requires it at the end of a FIFO queue's name
DLQ_NAME_SUFFIX: Final = "-dlq"  # the dead-letter queue is named after its queue: <name>-dlq.fifo


def fifo_queue_attributes(dead_letter_arn: str | None = None) -> dict[str, str]:
    """Attributes for SQS ``CreateQueue`` of the chat queue (FIFO, high throughput, SSE)."""
    attributes = {
        "FifoQueue": "true",
        "ContentBasedDeduplication": "false",
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
        "SqsManagedSseEnabled": "true",
        "VisibilityTimeout": str(QUEUE_VISIBILITY_TIMEOUT_SECONDS),
        "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
    }
    if dead_letter_arn is not None:
        attributes["RedrivePolicy"] = (
            f'{{"deadLetterTargetArn":"{dead_letter_arn}",'
            f'"maxReceiveCount":"{DLQ_MAX_RECEIVE_COUNT}"}}'
        )
    return attributes


# --- Environment variables of the Lambda functions (docs/deploy.md lists them) ----------------

ENV_CONNECTIONS_TABLE: Final = "CONNECTIONS_TABLE"
ENV_MANAGEMENT_ENDPOINT: Final = "WEBSOCKET_MANAGEMENT_ENDPOINT"
ENV_CHAT_QUEUE_URL: Final = "CHAT_QUEUE_URL"
ENV_IDLE_TIMEOUT: Final = "CONNECTION_IDLE_TIMEOUT_SECONDS"
ENV_MESSAGES_PER_MINUTE: Final = "MESSAGES_PER_MINUTE"
ENV_MAX_CONNECTIONS_PER_USER: Final = "MAX_CONNECTIONS_PER_USER"
ENV_AUTH_ISSUER: Final = "AUTH_ISSUER"
ENV_AUTH_AUDIENCE: Final = "AUTH_AUDIENCE"
ENV_AUTH_JWKS_URL: Final = "AUTH_JWKS_URL"
ENV_AUTH_TOKEN_USE: Final = "AUTH_TOKEN_USE"
ENV_LOG_LEVEL: Final = "LOG_LEVEL"
ENV_POWERTOOLS_SERVICE_NAME: Final = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE: Final = "POWERTOOLS_METRICS_NAMESPACE"
# How long a DynamoDB or SQS answer may take; local mode raises it (moto on a shared laptop is
# slower than AWS).
ENV_AWS_READ_TIMEOUT: Final = "AWS_READ_TIMEOUT_SECONDS"

# What each function reads besides the variables every function gets (``common_environment``).
FUNCTION_VARIABLES: Final = {
    "authorizer": (ENV_AUTH_ISSUER, ENV_AUTH_AUDIENCE, ENV_AUTH_JWKS_URL, ENV_AUTH_TOKEN_USE),
    "connect": (
        ENV_CONNECTIONS_TABLE,
        ENV_MANAGEMENT_ENDPOINT,
        ENV_IDLE_TIMEOUT,
        ENV_MAX_CONNECTIONS_PER_USER,
        ENV_MESSAGES_PER_MINUTE,
    ),
    "disconnect": (ENV_CONNECTIONS_TABLE,),
    "message": (
        ENV_CONNECTIONS_TABLE,
        ENV_CHAT_QUEUE_URL,
        ENV_IDLE_TIMEOUT,
        ENV_MESSAGES_PER_MINUTE,
    ),
}
Value = TypeVar("Value")


def service_name(stack: str | None = None) -> str:
    """The ``service`` of a stack's logs and EMF metrics: the stack in it, so that two stages in
    one account never move each other's alarms (the alarms watch this dimension)."""
    return f"{SERVICE_NAME}-{stack}" if stack else SERVICE_NAME


def common_environment(log_level: str, service: str | None = None) -> dict[str, str]:
    """The variables every function gets: its log level and Powertools' service and namespace."""
    return {
        ENV_LOG_LEVEL: log_level,
        ENV_POWERTOOLS_SERVICE_NAME: service or SERVICE_NAME,
        ENV_POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    }


def function_environment(function: str, values: Mapping[str, Value]) -> dict[str, Value]:
    """``function``'s own variables (``FUNCTION_VARIABLES``) taken from ``values`` by name."""
    return {name: values[name] for name in FUNCTION_VARIABLES[function]}


DEFAULT_MESSAGES_PER_MINUTE: Final = 60
DEFAULT_MAX_CONNECTIONS_PER_USER: Final = 10
RATE_WINDOW_SECONDS: Final = 60
DEFAULT_AWS_READ_TIMEOUT_SECONDS: Final = 1
# A handler makes an AWS call only while the call's worst case (2 attempts of 1 s connect + 1 s
# read, plus botocore's retry delay: 5 s, runtime.aws) and a 0.5 s answer margin fit the time
# left: a function timeout under 6 s would answer every message "unavailable" without trying.
MIN_LAMBDA_TIMEOUT_SECONDS: Final = 6

# --- Observability --------------------------------------------------------------------------

METRICS_NAMESPACE: Final = "RagWebSocket"
SERVICE_NAME: Final = "rag-websocket"
# EMF metric the runtime emits for failures that are not the client's doing (JWKS unreachable,
# a store or queue error, a crash). Authorizer denials and per-user 429s never move it; the
# stack's "unexpected failures" alarm watches it (components/alarms.py).
UNEXPECTED_FAILURES_METRIC: Final = "UnexpectedFailures"

# --- Values the configuration accepts (runtime.config and components.settings) ---------------

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
TokenUse = Literal["id", "access"]  # Cognito token types; unset for any other issuer
LOG_LEVELS: Final = get_args(LogLevel)
TOKEN_USES: Final = get_args(TokenUse)

# --- Client (client/) ---------------------------------------------------------------------

# SQS FIFO drops a message whose deduplication id it has seen within this window, so a client
# re-sending an unaccepted chat message with the same clientMessageId queues it once only if
# it gives up within the window.
SQS_DEDUPLICATION_WINDOW_SECONDS: Final = 5 * 60
