"""One cold start, run as ``python -m benchmarks.cold_start_probe`` in a fresh process.

Reads ``{"target": ..., "event": ...}`` on stdin, imports the target and serves it the event
(for the baseline, creates the DynamoDB client instead), then prints one line, ``RESULT_MARKER``
followed by JSON: milliseconds for the import and the first event, and whether boto3 is loaded.
Everything else the handler prints (logs, metrics) goes to stdout before that line.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import importlib  # noqa: E402 - the clock starts before any other import
import json  # noqa: E402
import sys  # noqa: E402

RESULT_MARKER = "COLD-START-RESULT "
BASELINE = "baseline"


class _Context:
    function_name = "benchmark"
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:benchmark"
    memory_limit_in_mb = 256

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


def main() -> None:
    request = json.loads(sys.stdin.read())
    target: str = request["target"]
    began = time.perf_counter()
    if target == BASELINE:
        import boto3

        imported = time.perf_counter()
        boto3.client("dynamodb")
        answer = None
    else:
        module = importlib.import_module(target)
        imported = time.perf_counter()
        answer = module.handler(request["event"], _Context())
    served = time.perf_counter()
    result = {
        "target": target,
        "startup_ms": (began - STARTED) * 1000,
        "import_ms": (imported - began) * 1000,
        "first_event_ms": (served - imported) * 1000,
        "total_ms": (served - began) * 1000,
        "boto3_loaded": "boto3" in sys.modules,
        "botocore_loaded": "botocore" in sys.modules,
        "answer": answer,
    }
    sys.stdout.write("\n" + RESULT_MARKER + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
