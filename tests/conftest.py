"""Loaded by pytest before any test module, in every run.

Hypothesis is imported here, at start-up: otherwise its pytest plugin imports it first from
the terminal summary of a run that used no property test, deep in pluggy's stack, where
CPython 3.11.7 can fail rewriting its asserts ("SystemError: AST constructor recursion
depth mismatch") and turn a green run red.
"""

import hypothesis  # noqa: F401
