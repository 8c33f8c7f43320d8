"""Reading the running configuration from the supervisor's control API (``GET /config``).

::

    fp = fetch_running_fingerprint(settings)   # raises SupervisorUnreachableError if down

The control API answers ``fingerprint(...).to_dict()``, optionally wrapped as
``{"fingerprint": {...}}``; the admin token is sent when one is configured.
"""

from __future__ import annotations

import httpx

from falcon_platform.config.fingerprint import Fingerprint
from falcon_platform.config.settings import Settings
from falcon_platform.errors import SupervisorUnreachableError


def control_client(settings: Settings, *, timeout: float = 2.0) -> httpx.Client:
    """An httpx client for the control API: UNIX socket when configured, else TCP."""
    headers = {}
    if settings.admin_token is not None:
        headers["Authorization"] = f"Bearer {settings.admin_token.get_secret_value()}"
    if settings.control_socket is not None:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(settings.control_socket)),
            base_url="http://falcon-control",
            headers=headers,
            timeout=timeout,
        )
    return httpx.Client(
        base_url=f"http://{settings.control_host}:{settings.control_port}",
        headers=headers,
        timeout=timeout,
    )


def fetch_running_fingerprint(settings: Settings) -> Fingerprint:
    """The running supervisor's fingerprint; SupervisorUnreachableError when there is none."""
    where = (
        f"unix:{settings.control_socket}"
        if settings.control_socket is not None
        else f"http://{settings.control_host}:{settings.control_port}"
    )
    with control_client(settings) as client:
        try:
            response = client.get("/config")
        except httpx.HTTPError as exc:
            raise SupervisorUnreachableError(
                f"no running supervisor answered GET {where}/config ({exc.__class__.__name__})"
            ) from None
    if response.status_code != 200:
        raise SupervisorUnreachableError(f"GET {where}/config answered HTTP {response.status_code}")
    try:
        return Fingerprint.from_dict(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise SupervisorUnreachableError(
            f"GET {where}/config did not return a fingerprint: {exc}"
        ) from None
