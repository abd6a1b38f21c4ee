"""The lean posting path's HTTP/1.1 exchange reads answers as RFC 9112 frames them.

Message framing: https://www.rfc-editor.org/rfc/rfc9112#section-6.3 (Content-Length, chunked,
close-delimited), chunked coding https://www.rfc-editor.org/rfc/rfc9112#section-7.1, persistence
https://www.rfc-editor.org/rfc/rfc9112#section-9.3 (``Connection: close``, HTTP/1.0). The
management API's error answers carry ``x-amzn-ErrorType`` and a JSON body with Content-Length
(tests/unit/fake_management_api.py cites the service model); the end-to-end exchange against
a real server is in tests/unit/test_sender.py on the lean path.
"""

from __future__ import annotations

import io
import socket
import threading

import pytest

from runtime.http1 import (
    MAX_HEADERS,
    MAX_LINE_BYTES,
    Channel,
    ClosedBeforeAnswer,
    ProtocolError,
    read_response,
    request_head,
)

GONE = (
    b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException\r\n"
    b'Content-Type: application/json\r\nContent-Length: 27\r\n\r\n{"message":"GoneException"}'
)
OK = b"HTTP/1.1 200 OK\r\nx-amzn-RequestId: r1\r\nContent-Length: 0\r\n\r\n"


def test_answers_on_one_kept_alive_stream_are_read_one_after_another() -> None:
    reader = io.BytesIO(GONE + OK)
    gone = read_response(reader)
    assert (gone.status, gone.headers["x-amzn-errortype"], gone.will_close) == (
        410,
        "GoneException",
        False,
    )
    assert gone.body == b'{"message":"GoneException"}'
    ok = read_response(reader)
    assert (ok.status, ok.body, ok.headers["x-amzn-requestid"]) == (200, b"", "r1")


def test_a_chunked_body_is_joined_and_its_trailer_skipped() -> None:
    answer = read_response(
        io.BytesIO(
            b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n" + OK
        )
    )
    assert (answer.status, answer.body, answer.will_close) == (429, b"hello world", False)


@pytest.mark.parametrize(
    ("head", "will_close"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", False),
    ],
)
def test_the_answer_says_whether_the_endpoint_closes_the_connection(
    head: bytes, will_close: bool
) -> None:
    assert read_response(io.BytesIO(head + b"\r\n")).will_close is will_close


def test_without_a_length_the_body_runs_to_the_close() -> None:
    answer = read_response(io.BytesIO(b"HTTP/1.1 500 Oops\r\n\r\nall of it"))
    assert (answer.status, answer.body, answer.will_close) == (500, b"all of it", True)


def test_interim_answers_are_skipped_and_204_has_no_body() -> None:
    answer = read_response(io.BytesIO(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204\r\n\r\n" + OK))
    assert (answer.status, answer.body) == (204, b"")


def test_a_repeated_field_is_joined() -> None:
    answer = read_response(
        io.BytesIO(b"HTTP/1.1 200 OK\r\nA: 1\r\na: 2\r\nContent-Length: 0\r\n\r\n")
    )
    assert answer.headers["a"] == "1, 2"


def test_a_connection_closed_before_any_answer_is_a_reset() -> None:
    with pytest.raises(ClosedBeforeAnswer) as caught:
        read_response(io.BytesIO(b""))
    assert isinstance(caught.value, ConnectionResetError)


@pytest.mark.parametrize(
    ("wire", "complaint"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "not three digits"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header field"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "not a header field"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "not a number of bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "after 5 of 10 body bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "in the middle of an answer"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "not hexadecimal"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than"),
        (b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n", "header fields"),
        (b"HTTP/1.1 200 OK\r\nA: " + b"b" * MAX_LINE_BYTES + b"\r\n\r\n", "over 65536 bytes"),
    ],
)
def test_a_malformed_answer_is_named(wire: bytes, complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        read_response(io.BytesIO(wire))


def test_a_request_is_one_head_with_its_length() -> None:
    head = request_head("POST", "/dev/@connections/a%3D", {"Host": "h", "X-Amz-Date": "d"}, 7)
    assert head == (
        b"POST /dev/@connections/a%3D HTTP/1.1\r\nContent-Length: 7\r\nHost: h\r\n"
        b"X-Amz-Date: d\r\n\r\n"
    )


def test_a_channel_writes_the_request_in_one_piece_and_reads_the_answer() -> None:
    """What the server receives is the request exactly, then it answers on the same socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        peer, _ = listener.accept()
        with peer:
            for _ in range(2):
                received.append(peer.recv(65536))
                peer.sendall(GONE if len(received) == 1 else OK)

    server = threading.Thread(target=serve)
    server.start()
    message = request_head("POST", "/dev/@connections/c1", {"Host": "h"}, 2) + b"{}"
    channel = Channel.open("127.0.0.1", listener.getsockname()[1], 1.0, 1.0, None)
    try:
        assert channel.exchange(message).status == 410
        assert channel.exchange(message).status == 200
    finally:
        channel.close()
        server.join()
        listener.close()
    assert received == [message, message]
