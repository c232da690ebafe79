"""What a test does when something it needs is not on this machine.

On a workstation it skips with the reason; under CI (the `CI` variable set, as `.ci/run`
is run) it fails, because a green CI must mean every test ran. scripts/test also fails a
CI run whose junit report counts any skipped test, so a new skip cannot slip past this.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str) -> NoReturn:
    if under_ci():
        pytest.fail(f"required under CI: {message}")
    pytest.skip(message)
