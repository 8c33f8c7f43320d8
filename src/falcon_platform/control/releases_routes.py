"""The releases part of the control API (one ``APIRouter``); the console and drills use it.

Reads are open on loopback like ``/status``; anything that changes state needs the token::

    GET  /releases                 every release (oldest first), the stable one, and why the
                                   last stable one was not resumed at start (or null)
    GET  /releases/{id}            one release: state, gate and step verdicts, config diff
    POST /releases                 create a release (config gate judged; refused -> 422)
    POST /deploy                   create (or name) a release and roll it out (202)
    GET  /rollout                  the rollout in progress or the last one
    POST /rollout/promote          promote the canary now (journaled, manual override)
    POST /rollout/abort            abort the canary: stable restored, canary drained
    POST /rollback                 back to the previous (or a named) good release
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from falcon_platform.control.auth import bearer_token, is_loopback
from falcon_platform.errors import UnauthorizedError
from falcon_platform.releases.manager import ReleaseManager
from falcon_platform.releases.rollout import Rollouts


class ReleaseRequest(BaseModel):
    env: dict[str, str] = Field(
        default_factory=dict, description="FALCON_* overrides over the stable release's."
    )
    reason: str = Field(min_length=1, max_length=2000, description="Why (shown and journaled).")
    created_by: str = Field(default="control-api", max_length=128)
    skip_gate: str | None = Field(
        default=None, max_length=500, description="Skip the gate; the reason is journaled."
    )
    allow_faults: bool = Field(default=False, description="Allow FALCON_FAULTS (a drill).")


class ReasonRequest(BaseModel):
    reason: str = Field(default="", max_length=2000)


class RollbackRequest(BaseModel):
    to: str | None = Field(default=None, max_length=32, description="Default: the previous good.")
    reason: str = Field(default="", max_length=2000)


def create_releases_router(
    manager: ReleaseManager, rollouts: Rollouts, admin_token: str
) -> APIRouter:
    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        given = bearer_token(authorization)
        if given is None or not secrets.compare_digest(given, admin_token):
            raise UnauthorizedError(
                "this call changes state and needs the admin token: set FALCON_ADMIN_TOKEN "
                "or run the CLI as the user who started the supervisor"
            )

    def require_reader(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> None:
        if not is_loopback(request):
            require_token(authorization)

    router = APIRouter()
    reader = [Depends(require_reader)]
    writer = [Depends(require_token)]

    @router.get("/releases", dependencies=reader)
    async def list_releases() -> dict[str, Any]:
        return {
            "stable": manager.stable_id,
            "releases": [r.to_dict() for r in manager.list()],
            "resume": manager.resume_note,  # the last stable release not resumed at start
        }

    @router.get("/releases/{release_id}", dependencies=reader)
    async def show_release(release_id: str) -> dict[str, Any]:
        return manager.get(release_id).to_dict()

    @router.post("/releases", dependencies=writer, status_code=201)
    async def create_release(body: ReleaseRequest) -> dict[str, Any]:
        record = manager.create(
            body.env,
            reason=body.reason,
            created_by=body.created_by,
            skip_gate_reason=body.skip_gate,
            allow_faults=body.allow_faults,
        )
        return record.to_dict()

    @router.post("/deploy", dependencies=writer, status_code=202)
    async def deploy(body: ReleaseRequest) -> dict[str, Any]:
        return rollouts.deploy(
            body.env,
            reason=body.reason,
            created_by=body.created_by,
            skip_gate_reason=body.skip_gate,
            allow_faults=body.allow_faults,
        )

    @router.get("/rollout", dependencies=reader)
    async def rollout() -> dict[str, Any]:
        return rollouts.status()

    @router.post("/rollout/promote", dependencies=writer, status_code=202)
    async def promote(body: ReasonRequest | None = None) -> dict[str, Any]:
        return rollouts.promote((body or ReasonRequest()).reason)

    @router.post("/rollout/abort", dependencies=writer, status_code=202)
    async def abort(body: ReasonRequest | None = None) -> dict[str, Any]:
        return rollouts.abort((body or ReasonRequest()).reason)

    @router.post("/rollback", dependencies=writer)
    async def rollback(body: RollbackRequest | None = None) -> dict[str, Any]:
        body = body or RollbackRequest()
        return await rollouts.rollback(body.to, body.reason or "rollback by hand")

    return router
