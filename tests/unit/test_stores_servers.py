"""Test servers: a missing binary skips with its name as the reason, and fails under CI=true."""

from __future__ import annotations

import pytest

from falcon_platform.testing.servers import find_binary


def test_missing_binary_skips_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(
        pytest.skip.Exception, match="redis-server-that-does-not-exist is not installed"
    ):
        find_binary("redis-server-that-does-not-exist")


def test_missing_binary_fails_when_ci_is_true(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        find_binary("initdb-that-does-not-exist")
