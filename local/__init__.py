"""Local mode: the whole stack on one machine (``python -m local``, ``make dev``).

An API Gateway WebSocket emulator (``local.gateway``) in front of the Lambda handlers, an
embedded moto for DynamoDB and SQS (``local.aws``), dev tokens (``local.tokens``) and a demo
responder (``local.responder``). ``local.stack.LocalStack`` starts it all in-process.
"""

from __future__ import annotations

import time

# `python -m local` runs this first, before any heavy import: its startup time counts from here.
IMPORTED_AT = time.perf_counter()
