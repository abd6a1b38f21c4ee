"""Runs Lambda handlers on a thread pool, or in worker processes, the way Lambda would run them.

A handler given as ``"package.module:function"`` is loaded from a fresh copy of its module when
the gateway starts (a cold start): module-level configuration is read from the environment as
it is then, and a second gateway in the same process gets its own copy. Every invocation gets a
Lambda-like ``context``, runs on a worker thread so a slow handler never blocks the event loop,
fails like a Lambda timeout past the function's timeout (``Task timed out``: API Gateway then
answers as for any function error), is cut off at the integration timeout (29 s) when that comes
first, and its result must survive JSON like Lambda's does. A thread cannot be killed: a
timed-out handler runs on, its answer dropped, where Lambda would stop its sandbox.

With ``processes`` (``--handler-processes``, ``local.gateway.workers``), handlers named by
``"module:function"`` run in that many spawned worker processes instead, each loading its own
copy of the module and running many invocations at once on its own threads: a CPU-heavy handler
(botocore) no longer shares the gateway's interpreter lock. Until a worker has loaded, the
gateway's threads run them. Handlers given as callables always run on threads.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from local.events import new_request_id, now_ms
from local.gateway.exceptions import FunctionError, IntegrationTimeout

if TYPE_CHECKING:
    from local.gateway.workers import WorkerProcesses

Handler = Callable[[dict[str, Any], Any], Any]
HandlerRef = Union[Handler, str]
"""A handler callable, or ``"package.module:function"`` to load at start."""

UNAUTHORIZED = "Unauthorized"  # the authorizer's documented way to say 401: not a crash
LAMBDA_TIMEOUT_ERROR = "Sandbox.Timedout"
_log = logging.getLogger("local.functions")


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int
    memory_limit_in_mb: int = 128
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - now_ms())

    @classmethod
    def starting_now(
        cls,
        function_name: str,
        *,
        timeout_ms: int,
        region: str,
        account_id: str,
        memory_limit_in_mb: int = 128,
        log_stream_name: str = "local",
    ) -> LambdaContext:
        """The context of an invocation of ``function_name`` that starts now, with a new id."""
        return cls(
            function_name=function_name,
            aws_request_id=new_request_id(),
            invoked_function_arn=f"arn:aws:lambda:{region}:{account_id}:function:{function_name}",
            log_group_name=f"/aws/lambda/{function_name}",
            log_stream_name=log_stream_name,
            deadline_ms=now_ms() + timeout_ms,
            memory_limit_in_mb=memory_limit_in_mb,
        )


@dataclass(frozen=True)
class Function:
    name: str
    handler: Handler
    ref: str | None = None  # "package.module:function": what a worker process loads


def split_reference(ref: str, what: str = "handler") -> tuple[str, str]:
    """``"package.module:NAME"`` → ``("package.module", "NAME")``; a ValueError naming ``what``."""
    module_name, separator, attribute = ref.partition(":")
    if not separator or not module_name or not attribute:
        raise ValueError(f"{what} {ref!r} must be written 'package.module:NAME'")
    return module_name, attribute


def load_handler(ref: str) -> Handler:
    """``"package.module:function"`` from a fresh copy of the module (a Lambda cold start)."""
    module_name, attribute = split_reference(ref)
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise ImportError(f"handler {ref!r}: no module named {module_name!r}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    # Registered while it runs: dataclasses and pydantic look classes' modules up there.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            del sys.modules[module_name]
        else:
            sys.modules[module_name] = previous
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise AttributeError(f"handler {ref!r}: {module_name} has no function {attribute!r}")
    function: Handler = handler
    return function


def function_for(ref: HandlerRef) -> Function:
    if isinstance(ref, str):
        return Function(name=ref.replace(":", "."), handler=load_handler(ref), ref=ref)
    name = f"{getattr(ref, '__module__', 'handler')}.{getattr(ref, '__qualname__', 'handler')}"
    return Function(name=name, handler=ref)


def run_handler(function: Function, event: dict[str, Any], context: LambdaContext) -> Any:
    """The handler's return value; ``FunctionError`` when it raises."""
    try:
        return function.handler(event, context)
    except Exception as exc:
        if type(exc) is Exception and str(exc) == UNAUTHORIZED:
            _log.info("%s: Exception: %s", function.name, exc)
        else:
            _log.exception("%s failed", function.name)
        raise FunctionError(type(exc).__name__, str(exc)) from None


def encode_result(function: Function, result: Any) -> str:
    """The result as JSON, as Lambda sends it; ``Runtime.MarshalError`` when JSON cannot hold it."""
    try:
        return json.dumps(result)
    except (TypeError, ValueError) as exc:
        _log.error("%s returned a value JSON cannot hold: %s", function.name, exc)
        raise FunctionError("Runtime.MarshalError", f"Unable to marshal response: {exc}") from None


def _run(function: Function, event: dict[str, Any], context: LambdaContext) -> Any:
    return json.loads(encode_result(function, run_handler(function, event, context)))


class Invoker:
    """Invokes functions on a bounded thread pool (or worker processes) with the integration
    timeout."""

    def __init__(
        self,
        *,
        max_workers: int,
        timeout_seconds: float,
        function_timeout_seconds: float,
        function_memory_mb: int,
        region: str,
        account_id: str,
        processes: WorkerProcesses | None = None,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.function_timeout_seconds = function_timeout_seconds
        self.function_memory_mb = function_memory_mb
        self._region = region
        self._account_id = account_id
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lambda")
        self.processes = processes

    def warm(self, refs: tuple[str, ...]) -> None:
        """Start the worker processes, each loading ``refs``, without waiting for them."""
        if self.processes is not None and refs:
            self.processes.start(refs)

    def _context(self, function: Function) -> LambdaContext:
        return LambdaContext.starting_now(
            function.name.replace(".", "-")[:64],
            timeout_ms=int(self.function_timeout_seconds * 1000),
            region=self._region,
            account_id=self._account_id,
            memory_limit_in_mb=self.function_memory_mb,
        )

    async def invoke(self, function: Function, event: dict[str, Any]) -> Any:
        """The handler's JSON-safe result; ``FunctionError`` or ``IntegrationTimeout`` else."""
        limit = min(self.function_timeout_seconds, self.timeout_seconds)
        function_times_out = self.function_timeout_seconds < self.timeout_seconds
        try:
            # Until a worker has loaded (its cold start), the gateway's threads run the function.
            if (
                self.processes is not None
                and function.ref is not None
                and self.processes.available()
            ):
                return await self.processes.invoke(
                    function.ref, event, self._context(function), limit
                )
            loop = asyncio.get_running_loop()
            running = loop.run_in_executor(
                self._pool, _run, function, event, self._context(function)
            )
            return await asyncio.wait_for(running, limit)
        except TimeoutError:
            if function_times_out:
                message = f"Task timed out after {self.function_timeout_seconds:.2f} seconds"
                _log.error("%s: %s", function.name, message)
                raise FunctionError(LAMBDA_TIMEOUT_ERROR, message) from None
            _log.error("%s: integration timed out after %s s", function.name, self.timeout_seconds)
            raise IntegrationTimeout() from None

    def shutdown(self) -> None:
        """Stop taking work; handlers still running finish on their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            self.processes.shutdown()
