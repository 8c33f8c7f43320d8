"""`falcon up`'s look at the stores before the slow steps: one line each, passwords masked."""

from __future__ import annotations

import pytest

from falcon_platform.config.settings import load_settings
from falcon_platform.errors import DependencyError
from falcon_platform.stores.preflight import check_stores, masked_url, redis_problem
from falcon_platform.testing.net import free_port


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("rediss://falcon:s3cret@r:6380/1", "rediss://falcon:***@r:6380/1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_no_redis_configured_is_no_problem() -> None:
    assert redis_problem(load_settings(redis_url=None)) is None


def test_an_unreachable_redis_is_one_warning_line_naming_where_and_what() -> None:
    port = free_port()  # nothing listens: a real refused connection on loopback
    line = redis_problem(load_settings(redis_url=f"redis://:s3cret-pw@127.0.0.1:{port}/0"))
    assert line is not None
    assert "\n" not in line
    assert f"redis://:***@127.0.0.1:{port}/0 (FALCON_REDIS_URL, from override)" in line
    assert "Connection refused" in line
    assert "s3cret" not in line
    assert "Start it or correct FALCON_REDIS_URL" in line


def test_an_unreachable_postgresql_raises_the_one_line_dependency_error() -> None:
    port = free_port()
    settings = load_settings(database_url=f"postgresql://falcon:pw@127.0.0.1:{port}/falcon")
    with pytest.raises(DependencyError) as caught:
        check_stores(settings)
    assert "(FALCON_DATABASE_URL, from override)" in caught.value.detail
    assert "sqlalche.me" not in caught.value.detail
    assert "\n" not in caught.value.detail
