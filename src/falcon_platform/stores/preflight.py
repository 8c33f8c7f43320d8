"""Can the stores be reached? Asked once by `falcon up`, before the slow steps of a start.

    problems = check_stores(settings)   # raises DependencyError for PostgreSQL; Redis: warnings

PostgreSQL is required (the supervisor's journal lives there): unreachable raises the one-line
``DependencyError`` of :func:`~falcon_platform.stores.database.schema_state`. Redis is not
(the breaker serves without it), so an unreachable Redis is a warning line naming where it was
configured and what Falcon does meanwhile.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from falcon_platform.config.settings import Settings
from falcon_platform.stores.database import is_embedded, schema_state

PROBE_TIMEOUT_S = 2.0  # a cold connect on a busy machine; the serving path keeps its own bound


def masked_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0`` (pure)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redis_problem(settings: Settings) -> str | None:
    """None when Redis answers PING (or none is configured); else one line saying so."""
    if settings.redis_url is None:
        return None
    import redis
    from redis.exceptions import RedisError

    url = settings.redis_url.get_secret_value()
    client = redis.Redis.from_url(
        url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S
    )
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        source = settings.sources.get("redis_url", "default")
        return (
            f"Redis at {masked_url(url)} (FALCON_REDIS_URL, from {source}) does not answer: "
            f"{str(exc).rstrip('.')}; Falcon serves without it (cache misses, idempotency keys in this machine's "
            "SQLite) until it does. Start it or correct FALCON_REDIS_URL."
        )
    finally:
        client.close()
    return None


def check_stores(settings: Settings) -> list[str]:
    """Raise ``DependencyError`` if the external PostgreSQL cannot be reached; return warnings."""
    if not is_embedded(settings):
        schema_state(settings)  # connects; a schema behind is refused later by ensure_schema
    problem = redis_problem(settings)
    return [problem] if problem else []
