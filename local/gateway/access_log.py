"""API Gateway-style access log: one record per event the gateway delivers (or refuses).

Records carry exactly six fields: ``time`` (the event's requestTime, CLF), ``connectionId``,
``eventType``, ``routeKey``, ``status`` and ``latency`` (milliseconds). The text form starts with
``ACCESS`` and the JSON form has only those keys, so neither can be mistaken for the handlers'
own Powertools logs (JSON objects with ``level``, ``message``, ``service``...).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


@dataclass(frozen=True)
class AccessRecord:
    time: str
    connectionId: str
    eventType: str
    routeKey: str
    status: int
    latency: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def to_text(self) -> str:
        return (
            f"ACCESS [{self.time}] {self.connectionId} {self.eventType} {self.routeKey} "
            f"{self.status} {self.latency}ms"
        )


AccessLogSink = Callable[[AccessRecord], None]


class StreamAccessLog:
    """Writes records to a stream (stdout by default), one line each, from any thread."""

    def __init__(self, log_format: LogFormat = "text", stream: TextIO | None = None) -> None:
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log format {log_format!r} must be one of {', '.join(LOG_FORMATS)}")
        self.log_format = log_format
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, record: AccessRecord) -> None:
        line = record.to_json() if self.log_format == "json" else record.to_text()
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()
