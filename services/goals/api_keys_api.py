"""``/v1/api-keys``: make, list and revoke the API keys of systems that cannot sign in with
OAuth 2.0; and ``/v1/api-keys/verify``, where the other services check a presented key."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path

from goalwatch.auth.api_keys import KEY_ID_PATTERN, ApiKeyCheck, ApiKeyVerdict
from goalwatch.auth.policies import API_KEYS_READ, API_KEYS_VERIFY, API_KEYS_WRITE
from goalwatch.auth.policy import Caller
from goalwatch.problems import problem_responses
from services.goals.api_keys import ApiKeyCreate, ApiKeyCreated, ApiKeyRead, ApiKeyStore
from services.goals.metrics import HANDLER_SECONDS

_NOT_FOUND = "no API key with id '{}'; `goalwatch keys list` shows them"


def api_keys_router(store: ApiKeyStore) -> APIRouter:
    """The API key routes over ``store``."""
    router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])
    timed = HANDLER_SECONDS.labels
    key_id_path = Path(pattern=KEY_ID_PATTERN, description="The key's id: 12 hex digits.")

    @router.post(
        "",
        status_code=201,
        summary="Make an API key (shown once)",
        description="The answer holds the key itself, `gw_<id>_<secret>`, this once: only a "
        "hash of its secret is kept. Keys grant system roles only (publisher, goals_writer, "
        "directory_writer); a publisher key names the metrics and sources it may publish.",
        responses=problem_responses(
            {422: "The key would grant a role keys cannot have, or its grant does not fit."}
        ),
    )
    async def create_api_key(
        spec: ApiKeyCreate, caller: Annotated[Caller, Depends(API_KEYS_WRITE)]
    ) -> ApiKeyCreated:
        with timed(service="goals", handler="create_api_key").time():
            return await store.create(spec=spec, created_by=caller.who)

    @router.get("", summary="Every API key, revoked ones too, newest first (no secrets)")
    async def list_api_keys(_: Annotated[Caller, Depends(API_KEYS_READ)]) -> list[ApiKeyRead]:
        with timed(service="goals", handler="list_api_keys").time():
            return await store.list()

    @router.post(
        "/verify",
        summary="Check a key presented to another service",
        description="For goalwatch's services: whether the key is valid now and what it grants. "
        "A refused key is answered 200 with `valid: false` and the reason.",
    )
    async def verify_api_key(
        check: ApiKeyCheck, _: Annotated[Caller, Depends(API_KEYS_VERIFY)]
    ) -> ApiKeyVerdict:
        with timed(service="goals", handler="verify_api_key").time():
            return await store.check(check.key)

    @router.get(
        "/{key_id}",
        summary="One API key (no secret)",
        responses=problem_responses({404: "No key with that id."}),
    )
    async def get_api_key(
        key_id: Annotated[str, key_id_path], _: Annotated[Caller, Depends(API_KEYS_READ)]
    ) -> ApiKeyRead:
        found = await store.get(key_id)
        if found is None:
            raise HTTPException(404, _NOT_FOUND.format(key_id))
        return found

    @router.delete(
        "/{key_id}",
        summary="Revoke an API key",
        description="The key stops working at once on goals, and on the other services within "
        "GOALWATCH_API_KEY_CACHE_TTL (30 s by default). The record stays, revoked; revoking "
        "again changes nothing.",
        responses=problem_responses({404: "No key with that id."}),
    )
    async def revoke_api_key(
        key_id: Annotated[str, key_id_path], caller: Annotated[Caller, Depends(API_KEYS_WRITE)]
    ) -> ApiKeyRead:
        with timed(service="goals", handler="revoke_api_key").time():
            revoked = await store.revoke(key_id, revoked_by=caller.who)
        if revoked is None:
            raise HTTPException(404, _NOT_FOUND.format(key_id))
        return revoked

    return router
