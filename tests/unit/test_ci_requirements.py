"""A missing service or browser fails a CI run and only skips on a workstation."""

from __future__ import annotations

import pytest

from tests.ci import unavailable


@pytest.mark.parametrize("value", ["true", "1", "yes", "github"])
def test_under_ci_a_missing_requirement_fails(monkeypatch: pytest.MonkeyPatch,
                                              value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="required under CI: no chromium"):
        unavailable("no chromium")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_elsewhere_it_skips(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="no chromium"):
        unavailable("no chromium")
