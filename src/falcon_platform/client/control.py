"""The CLI's client for the supervisor's control API (TCP or UNIX socket).

client = ControlClient.from_settings(settings)
client.status()["workers"]; client.health(); client.events(since=..., kinds=["worker_exited"])
client.restart()                  # needs the admin token (env or <run_dir>/admin_token)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from falcon_platform.config.admin_token import read_admin_token
from falcon_platform.config.settings import Settings
from falcon_platform.errors import (
    FalconError,
    InvalidInputError,
    NotFoundError,
    ReleaseRefusedError,
    RuntimeStateError,
    SupervisorUnreachableError,
    UnauthorizedError,
)


def control_url(settings: Settings) -> str:
    if settings.control_socket is not None:
        return f"unix:{settings.control_socket}"
    host = settings.control_host
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{settings.control_port}"


class ControlClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        uds: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        transport = httpx.HTTPTransport(uds=uds) if uds else None
        self.where = f"unix:{uds}" if uds else base_url
        self._token = token
        self._http = httpx.Client(base_url=base_url, transport=transport, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 10.0) -> ControlClient:
        token = read_admin_token(settings)
        if settings.control_socket is not None:
            return cls(
                "http://falcon", token=token, uds=str(settings.control_socket), timeout=timeout
            )
        return cls(control_url(settings), token=token, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        auth: bool = False,
        ok: Sequence[int] = (200, 202),
        typed: bool = False,  # 404 -> NotFoundError, 422 -> InvalidInputError (exit 2)
        **kw: Any,
    ) -> httpx.Response:
        headers = {}
        if auth:
            if not self._token:
                raise UnauthorizedError(
                    "no admin token: set FALCON_ADMIN_TOKEN, or run as the user who started "
                    "`falcon up` (it stored one in <FALCON_HOME>/run/admin_token)"
                )
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._http.request(method, path, headers=headers, **kw)
        except httpx.TransportError as exc:
            raise SupervisorUnreachableError(
                f"no Falcon supervisor answers at {self.where} ({type(exc).__name__}); "
                "start one with `falcon up`, or set FALCON_CONTROL_PORT / FALCON_CONTROL_SOCKET"
            ) from None
        if response.status_code not in ok:
            detail = _detail(response)
            if response.status_code == 401:
                raise UnauthorizedError(detail)
            if response.status_code == 409:
                raise RuntimeStateError(detail)
            if response.status_code == 422 and _code(response) == "policy_violation":
                raise ReleaseRefusedError(detail)
            if response.status_code == 404 and (typed or _code(response) == "not_found"):
                raise NotFoundError(detail)
            if response.status_code == 422 and (typed or _code(response) == "invalid_input"):
                raise InvalidInputError(detail)
            raise FalconError(f"control API {method} {path}: HTTP {response.status_code}: {detail}")
        return response

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", "/status").json()
        return body

    def health(self) -> tuple[bool, str]:
        body = self._request("GET", "/health", ok=(200, 503)).json()
        return bool(body.get("ok")), str(body.get("detail", ""))

    def events(
        self,
        *,
        since: float | None = None,
        kinds: Sequence[str] = (),
        release: str | None = None,
        worker: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        params: list[tuple[str, str | int | float]] = [("limit", limit)]
        if since is not None:
            params.append(("since", since))
        params += [("kind", k) for k in kinds]
        if release:
            params.append(("release", release))
        if worker:
            params.append(("worker", worker))
        events: list[dict[str, Any]] = self._request("GET", "/events", params=params).json()[
            "events"
        ]
        return events

    def alerts(self) -> dict[str, Any]:
        """Firing and pending alerts from the supervisor's evaluator (``GET /alerts``)."""
        body: dict[str, Any] = self._request("GET", "/alerts").json()
        return body

    def incidents(self, *, status: Sequence[str] = (), limit: int = 100) -> list[dict[str, Any]]:
        """Incidents, newest first (``GET /incidents``)."""
        params: list[tuple[str, str | int]] = [("limit", limit), *(("status", s) for s in status)]
        found: list[dict[str, Any]] = self._request(
            "GET", "/incidents", params=params, typed=True
        ).json()["incidents"]
        return found

    def incident(self, incident_id: str, *, part: str = "") -> dict[str, Any]:
        """One incident (``GET /incidents/{id}``), or one of its parts (``/postmortem``...)."""
        body: dict[str, Any] = self._request(
            "GET", f"/incidents/{incident_id}{part}", typed=True
        ).json()
        return body

    def incident_open(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = self._request(
            "POST", "/incidents", auth=True, ok=(201,), typed=True, json=dict(payload)
        ).json()
        return body

    def incident_action(
        self, incident_id: str, action: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``POST /incidents/{id}/{ack|note|mitigate|resolve|severity}``."""
        body: dict[str, Any] = self._request(
            "POST", f"/incidents/{incident_id}/{action}", auth=True, typed=True, json=dict(payload)
        ).json()
        return body

    def actions(self, *, incident: str | None = None, overdue: bool = False) -> dict[str, Any]:
        """Action items (``GET /actions``)."""
        params: dict[str, str] = {"overdue": "true" if overdue else "false"}
        if incident:
            params["incident"] = incident
        body: dict[str, Any] = self._request("GET", "/actions", params=params, typed=True).json()
        return body

    def action_add(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = self._request(
            "POST", "/actions", auth=True, ok=(201,), typed=True, json=dict(payload)
        ).json()
        return body

    def action_step(self, item_id: str, verb: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /actions/{id}/{start|done|todo}``."""
        body: dict[str, Any] = self._request(
            "POST", f"/actions/{item_id}/{verb}", auth=True, typed=True, json=dict(payload)
        ).json()
        return body

    def metrics(self) -> str:
        return self._request("GET", "/metrics").text

    def restart(
        self,
        env: Mapping[str, str] | None = None,
        *,
        override_gate: str | None = None,
        allow_faults: bool = False,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"env": dict(env or {})}
        if override_gate is not None:
            payload["override_gate"] = override_gate
        if allow_faults:
            payload["allow_faults"] = True
        body: dict[str, Any] = self._request("POST", "/restart", auth=True, json=payload).json()
        return body

    # ----------------------------------------------------------------- releases
    def releases(self) -> dict[str, Any]:
        """``GET /releases``: {"stable": id, "releases": [record, ...]} (oldest first)."""
        body: dict[str, Any] = self._request("GET", "/releases").json()
        return body

    def release(self, release_id: str) -> dict[str, Any]:
        """``GET /releases/{id}``: one release record (``NotFoundError`` if there is none)."""
        response = self._request("GET", f"/releases/{release_id}", ok=(200, 404))
        if response.status_code == 404:
            raise NotFoundError(_detail(response))
        body: dict[str, Any] = response.json()
        return body

    def create_release(
        self,
        env: Mapping[str, str],
        *,
        reason: str,
        created_by: str = "control-api",
        skip_gate: str | None = None,
        allow_faults: bool = False,
    ) -> dict[str, Any]:
        """``POST /releases``: a new release, judged by the config gate (refused ->
        ``ReleaseRefusedError``; the refused record is kept)."""
        payload = _release_payload(env, reason, created_by, skip_gate, allow_faults)
        body: dict[str, Any] = self._request(
            "POST", "/releases", auth=True, json=payload, ok=(201,)
        ).json()
        return body

    def deploy(
        self,
        env: Mapping[str, str],
        *,
        reason: str,
        created_by: str = "control-api",
        skip_gate: str | None = None,
        allow_faults: bool = False,
    ) -> dict[str, Any]:
        """``POST /deploy``: create a release and start its rollout (the supervisor runs it;
        follow it with :meth:`rollout`). Refused by the config gate -> ``ReleaseRefusedError``."""
        payload = _release_payload(env, reason, created_by, skip_gate, allow_faults)
        body: dict[str, Any] = self._request("POST", "/deploy", auth=True, json=payload).json()
        return body

    def rollout(self) -> dict[str, Any]:
        """``GET /rollout``: {"rollout": {...} or None, "stable": id, "last_rollback": ...}."""
        body: dict[str, Any] = self._request("GET", "/rollout").json()
        return body

    def promote(self, reason: str = "") -> dict[str, Any]:
        body: dict[str, Any] = self._request(
            "POST", "/rollout/promote", auth=True, json={"reason": reason}
        ).json()
        return body

    def abort(self, reason: str = "") -> dict[str, Any]:
        body: dict[str, Any] = self._request(
            "POST", "/rollout/abort", auth=True, json={"reason": reason}
        ).json()
        return body

    def rollback(self, to: str | None = None, reason: str = "") -> dict[str, Any]:
        """``POST /rollback``: returns when the target release serves alone."""
        payload: dict[str, Any] = {"reason": reason}
        if to is not None:
            payload["to"] = to
        body: dict[str, Any] = self._request("POST", "/rollback", auth=True, json=payload).json()
        return body

    def shutdown(self) -> dict[str, Any]:
        body: dict[str, Any] = self._request("POST", "/shutdown", auth=True).json()
        return body

    def routes(self) -> set[str]:
        """The control API's paths (from its OpenAPI document): what this deployment offers,
        e.g. ``"/incidents" in client.routes()`` (drills adapt to the features present)."""
        paths: dict[str, Any] = self._request("GET", "/openapi.json").json().get("paths", {})
        return set(paths)


def _release_payload(
    env: Mapping[str, str],
    reason: str,
    created_by: str,
    skip_gate: str | None,
    allow_faults: bool,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"env": dict(env), "reason": reason, "created_by": created_by}
    if skip_gate is not None:
        payload["skip_gate"] = skip_gate
    if allow_faults:
        payload["allow_faults"] = True
    return payload


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        return str(body.get("detail", body))
    return str(body)


def _code(response: httpx.Response) -> str | None:
    """The ``error`` code of a Falcon JSON error body, if it is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None
