"""``python -m benchmarks.moto_cpu``: CPU per DynamoDB call in local mode's moto process.

The full local stack's throughput is bound by CPU, and most of it is spent in moto's process
(``local.moto_process``), one interpreter lock serving every handler. This measures what a
call costs there, with and without that process's fast path, side by side in one run: two
moto processes (``EmbeddedAws(fast_path=...)``) get the same calls in alternating rounds, and
each call's cost is the process's CPU time (user + system, all threads, from
``/proc/<pid>/stat``) over a round divided by its calls. The calls are the runtime's own
(``ConnectionStore``), so the requests are byte for byte what the handlers send:

- ``touch``: the conditional ``UpdateItem`` every message sends (``ConnectionStore.touch``);
- ``query_1000``: ``connection_ids_for_user`` of a user with 1000 connections, the ``Query``
  on ``userId-index`` ``broadcast_to_user`` sends, in a table holding another 1000 rows;
- ``connect``: ``ConnectionStore.add`` as ``$connect`` sends it (a ``TransactWriteItems`` of
  the row and the user's item, under the per-user limit) into that table of 2000+ rows.

Wall-clock times are not reported: other work on the machine moves them, not the CPU counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.cpu import process_cpu_seconds
from local.aws import EmbeddedAws
from runtime.config import StoreConfig
from runtime.connections import ConnectionStore

USER = "moto-cpu-user"
OTHER_USERS = 1000
FAN_OUT = 1000


class Moto:
    """One embedded moto with ``FAN_OUT`` connections of ``USER`` and one each of others."""

    def __init__(self, *, fast_path: bool) -> None:
        self.name = "fast" if fast_path else "plain"
        self._aws = EmbeddedAws(fast_path=fast_path)
        resources = self._aws.start()
        self.store = ConnectionStore(
            StoreConfig(table_name=resources.table_name, max_connections_per_user=0),
            client=resources.dynamodb(),
        )
        self.limited_store = ConnectionStore(
            StoreConfig(table_name=resources.table_name), client=resources.dynamodb()
        )
        self.connects = 0
        self.connections = [self.store.add(f"c{n}", USER) for n in range(FAN_OUT)]
        for n in range(OTHER_USERS):
            self.store.add(f"o{n}", f"other-{n}")
        assert len(self.store.connection_ids_for_user(USER)) == FAN_OUT

    def cpu_ms_per_call(self, call: Callable[[int], Any], calls: int) -> float:
        pid = self._aws.pid
        assert pid is not None
        before = process_cpu_seconds(pid)
        for n in range(calls):
            call(n)
        return (process_cpu_seconds(pid) - before) * 1000 / calls

    def stop(self) -> None:
        self._aws.stop()


def _operations(moto: Moto) -> dict[str, Callable[[int], Any]]:
    store, connections = moto.store, moto.connections

    def touch(n: int) -> None:
        connection = connections[n % len(connections)]
        store.touch(connection.connection_id, connection.connected_at_ms)

    def query(_: int) -> None:
        store.connection_ids_for_user(USER)

    def connect(_: int) -> None:
        moto.connects += 1
        moto.limited_store.add(f"new-{moto.connects}", f"new-user-{moto.connects}")

    return {"touch": touch, "query_1000": query, "connect": connect}


def measure(rounds: int, touches: int, queries: int, connects: int) -> dict[str, Any]:
    """Median CPU ms per call of each operation, plain moto and fast path, and their ratio."""
    calls = {"touch": touches, "query_1000": queries, "connect": connects}
    motos = [Moto(fast_path=False), Moto(fast_path=True)]
    samples: dict[str, dict[str, list[float]]] = {
        op: {moto.name: [] for moto in motos} for op in calls
    }
    try:
        for round_number in range(rounds):
            # Alternate which goes first, so a burst of load elsewhere hits both alike.
            order = motos if round_number % 2 == 0 else motos[::-1]
            for moto in order:
                for op, call in _operations(moto).items():
                    samples[op][moto.name].append(moto.cpu_ms_per_call(call, calls[op]))
    finally:
        for moto in motos:
            moto.stop()
    results: dict[str, Any] = {}
    for op, by_name in samples.items():
        plain = statistics.median(by_name["plain"])
        fast = statistics.median(by_name["fast"])
        results[op] = {
            "plain_cpu_ms": round(plain, 3),
            "fast_cpu_ms": round(fast, 3),
            "fast_over_plain": round(fast / plain, 3),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.moto_cpu", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--touches", type=int, default=500, help="touches per round")
    parser.add_argument("--queries", type=int, default=5, help="1000-item queries per round")
    parser.add_argument("--connects", type=int, default=20, help="connects per round")
    options = parser.parse_args(argv)
    began = time.monotonic()
    results = measure(options.rounds, options.touches, options.queries, options.connects)
    print(json.dumps(results, indent=2))
    print(f"({time.monotonic() - began:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
