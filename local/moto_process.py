"""moto's server in a process of its own: ``python -m local.moto_process --fd N``.

``local.aws.EmbeddedAws`` binds the listening socket and starts this process on it, so the
endpoint is known before moto has loaded, and moto's request handling (a few milliseconds of
CPU per call) never shares an interpreter lock with the gateway or the handlers. The process
prints ``READY`` once it serves, and stops when its stdin closes: when ``EmbeddedAws.stop()``
closes it, or when the process that started it dies.

moto runs patched like AWS (``local.fidelity.patch_moto``) and with two of its costs removed
that change nothing it answers:

- its HTTP dispatcher lists moto's package directory (a ``listdir`` and a ``stat`` per
  service) under a process-wide lock on every request: here the list is read once;
- its SQS model reads the clock through ``unix_time()``, which builds two datetimes per call,
  several times per queued message: here it is ``time.time()``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from datetime import datetime

from local.fidelity import patch_moto

READY_LINE = "READY"


def _speed_up_moto() -> None:
    import moto.backends
    import moto.core.utils
    import moto.sqs.models

    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: iter(modules)
    original = moto.core.utils.unix_time

    def unix_time(dt: datetime | None = None) -> float:
        return time.time() if dt is None else float(original(dt))

    def unix_time_millis(dt: datetime | None = None) -> float:
        return unix_time(dt) * 1000.0

    # The names moto's SQS model imported from moto.core.utils, rebound where it looks them up.
    setattr(moto.sqs.models, "unix_time", unix_time)  # noqa: B010
    setattr(moto.sqs.models, "unix_time_millis", unix_time_millis)  # noqa: B010


def serve(fd: int, host: str) -> None:
    """Serve moto on the listening socket ``fd`` until stdin closes."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    patch_moto()
    _speed_up_moto()
    # One line per request from werkzeug would drown the gateway's log.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, 0, app, threaded=True, request_handler=MotoRequestHandler, fd=fd)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        print(READY_LINE, flush=True)
        sys.stdin.read()
    except BrokenPipeError:
        pass  # the process that started this one stopped before reading on
    server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.moto_process")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--host", default="127.0.0.1", help="the socket's address")
    options = parser.parse_args(argv)
    serve(options.fd, options.host)
    return 0


if __name__ == "__main__":
    sys.exit(main())
