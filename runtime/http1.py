"""One HTTP/1.1 request and its answer on a kept-alive socket, for the lean posting path.

Why not ``http.client``: it writes a request's head and its body in two ``send`` calls and
parses every answer's headers with the ``email`` package, which together cost about a third of
a lean post's CPU (``python -m benchmarks sender``). A post to the management API needs less:
its request is one write of bytes already built, and its answer a status line, a few headers
and a short body. The answer is read as RFC 9112 frames it: the body by ``Content-Length``,
by ``Transfer-Encoding: chunked``, or up to the close; 1xx interim answers skipped; lines and
header counts bounded as ``http.client`` bounds them. Anything else is a ``ProtocolError``.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import BinaryIO

# http.client's bounds (_MAXLINE, _MAXHEADERS): an endpoint cannot make a reader buffer more.
MAX_LINE_BYTES = 65536
MAX_HEADERS = 100
_NO_BODY_STATUSES = frozenset({204, 304})
_BLANK_LINES = (b"\r\n", b"\n")


class ProtocolError(Exception):
    """The answer is not HTTP/1.x as RFC 9112 frames it."""


class ClosedBeforeAnswer(ConnectionResetError):
    """The endpoint closed the connection before the first byte of an answer, as an endpoint
    closes a kept-alive connection that was idle."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; repeated fields joined with ", "
    body: bytes
    will_close: bool  # the endpoint closes the connection after this answer


def request_head(method: str, path: str, headers: dict[str, str], body_length: int) -> bytes:
    """The head of a request with a body of ``body_length`` bytes: request line, the fields
    (names and values must be ASCII without line breaks, as a signed request's are), blank line."""
    lines = [f"{method} {path} HTTP/1.1", f"Content-Length: {body_length}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    lines.append("\r\n")
    return "\r\n".join(lines).encode("ascii")


class Channel:
    """A kept-alive connection: one socket and one buffered reader on it, used by one thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader: BinaryIO = sock.makefile("rb")

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        connect_seconds: float,
        read_seconds: float,
        tls: ssl.SSLContext | None,
    ) -> Channel:
        """Connected within ``connect_seconds`` (TLS verified with ``tls`` when given); every
        later read or write waits at most ``read_seconds``."""
        sock = socket.create_connection((host, port), timeout=connect_seconds)
        try:
            # The request is one write: nothing for Nagle's algorithm to gather.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
            sock.settimeout(read_seconds)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def exchange(self, message: bytes) -> Response:
        """Send one whole request and read its answer."""
        self.sock.sendall(message)
        return read_response(self._reader)

    def close(self) -> None:
        self._reader.close()
        self.sock.close()


def read_response(reader: BinaryIO) -> Response:
    """One answer from ``reader``, skipping 1xx interim answers."""
    line = reader.readline(MAX_LINE_BYTES + 1)
    if not line:
        raise ClosedBeforeAnswer("the endpoint closed the connection without an answer")
    version, status = _status_line(line)
    headers = _headers(reader)
    while 100 <= status < 200:
        version, status = _status_line(_line(reader))
        headers = _headers(reader)
    connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    will_close = "close" in connection or (
        version == b"HTTP/1.0" and "keep-alive" not in connection
    )
    if status in _NO_BODY_STATUSES:
        return Response(status, headers, b"", will_close)
    coding = headers.get("transfer-encoding", "").lower()
    if coding:
        if coding.rsplit(",", 1)[-1].strip() != "chunked":
            return Response(status, headers, reader.read(), True)  # framed by the close
        return Response(status, headers, _chunked_body(reader), will_close)
    length = headers.get("content-length")
    if length is None:
        return Response(status, headers, reader.read(), True)  # framed by the close
    if not length.isdigit():
        raise ProtocolError(f"Content-Length {length!r} is not a number of bytes")
    return Response(status, headers, _exactly(reader, int(length)), will_close)


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"a line of the answer is over {MAX_LINE_BYTES} bytes")
    if not line:
        raise ProtocolError("the connection closed in the middle of an answer")
    return line


def _status_line(line: bytes) -> tuple[bytes, int]:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1.x status line: {line[:80]!r}")
    if len(parts[1]) != 3:
        raise ProtocolError(f"status {parts[1]!r} is not three digits")
    return parts[0], int(parts[1])


def _headers(reader: BinaryIO) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader)
        if line in _BLANK_LINES:
            return headers
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ProtocolError(f"not a header field: {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    raise ProtocolError(f"the answer has over {MAX_HEADERS} header fields")


def _chunked_body(reader: BinaryIO) -> bytes:
    chunks = []
    while True:
        size_field = _line(reader).split(b";", 1)[0].strip()
        try:
            size = int(size_field, 16) if size_field.isalnum() else -1
        except ValueError:
            size = -1
        if size < 0:
            raise ProtocolError(f"chunk size {size_field[:20]!r} is not hexadecimal")
        if size == 0:
            break
        chunks.append(_exactly(reader, size))
        if _line(reader) not in _BLANK_LINES:
            raise ProtocolError("a chunk is longer than its size says")
    while _line(reader) not in _BLANK_LINES:  # trailer fields: none that a post needs
        pass
    return b"".join(chunks)


def _exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise ProtocolError(f"the connection closed after {len(data)} of {size} body bytes")
    return data
