"""Loaded by pytest before any test module, in every run.

Hypothesis is imported here, at start-up: otherwise its pytest plugin imports it first from
the terminal summary of a run that used no property test, deep in pluggy's stack, where
CPython 3.11.7 can fail rewriting its asserts ("SystemError: AST constructor recursion
depth mismatch") and turn a green run red.

A run that has finished must also end: if the interpreter is still alive a minute after
pytest is done (a thread or child that will not stop), faulthandler prints every thread's
stack and exits, so CI shows what held it instead of running into its time limit.
"""

import faulthandler
import sys

import hypothesis  # noqa: F401
import pytest

EXIT_GRACE_S = 60


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    faulthandler.dump_traceback_later(EXIT_GRACE_S, exit=True, file=sys.__stderr__)
