"""The local stack for the browser client's tests: the e2e suite's fixtures, not a copy."""

from tests.e2e.conftest import (  # noqa: F401 - pytest finds fixtures by name in a conftest
    access_log,
    management,
    stack,
    stack_options,
    state_dir,
    store,
)
