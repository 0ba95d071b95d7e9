"""Sign-in settings every service reads (``GOALWATCH_OIDC_*``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from goalwatch.auth.roles import Role


class AuthSettings(BaseSettings):
    """Where people and systems sign in, and how their tokens name who they are."""

    model_config = SettingsConfigDict(env_prefix="GOALWATCH_", extra="ignore")

    oidc_issuer: str | None = Field(
        None,
        description="Issuer URL of the OpenID Connect provider whose tokens are accepted "
        "(Keycloak: https://HOST/realms/REALM; Entra ID: https://login.microsoftonline.com/"
        "TENANT/v2.0). Without it, no bearer token is accepted.",
    )
    oidc_audience: str = Field(
        "goalwatch", description="The `aud` a token must carry: goalwatch's client id or API name."
    )
    oidc_jwks_url: str | None = Field(
        None, description="The provider's keys, when its discovery document is not to be used."
    )
    oidc_person_claim: str = Field(
        "preferred_username",
        description="The claim holding a person's id in goals (e.g. preferred_username, "
        "email, employee_id).",
    )
    oidc_roles_claim: str = Field(
        "roles",
        description="The claim holding granted roles (a list), e.g. roles or groups; a dotted "
        "path reaches into objects (realm_access.roles).",
    )
    oidc_client_claim: str = Field(
        "client_id",
        description="What marks a system's token (client credentials): a claim present only "
        "in those, naming the client (Keycloak: `client_id`), or `CLAIM=VALUE` when a claim "
        "tells the two apart by its value (Entra ID: `idtyp=app`; the client is then named by "
        "`azp`, `appid` or `client_id`). A token without the mark is a person's.",
    )
    oidc_role_map: Annotated[dict[str, Role], NoDecode] = Field(
        default_factory=dict,
        description="The provider's role or group names to goalwatch roles, comma-separated "
        "`NAME=ROLE` (e.g. `gw-hr=hr_admin,ops=operator`); names that are goalwatch roles "
        "already need no entry.",
    )
    oidc_client_id: str | None = Field(
        None, description="This service's own client at the provider, for calls it makes."
    )
    oidc_client_secret: SecretStr | None = Field(
        None, description="The secret of `oidc_client_id` (from a Kubernetes Secret)."
    )

    goals_url: str = Field(
        "http://127.0.0.1:8002",
        description="Base URL of the goals service, which verifies API keys for the other "
        "services (goals reads its own store).",
    )
    api_key_cache_ttl: float = Field(
        30.0,
        ge=0,
        description="Seconds a service keeps goals' answer about an API key: a revoked key "
        "may keep working that long on a service that has just checked it (docs/api-keys.md).",
    )

    role_grants: bool = Field(
        True,
        description="Whether roles granted in goalwatch (`goalwatch roles grant`, "
        "/v1/role-grants on goals) count next to the token's roles claim; false: only the "
        "identity provider grants roles.",
    )
    role_grant_cache_ttl: float = Field(
        30.0,
        ge=0,
        description="Seconds a service keeps goals' answer about the roles granted to a "
        "person: a grant or a revocation reaches it within that long (goals reads its own "
        "store at once).",
    )

    @field_validator("oidc_role_map", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in filter(None, (piece.strip() for piece in value.split(","))):
            name, equals, role = part.partition("=")
            if not equals or not name.strip():
                raise ValueError(f"{part!r} is not NAME=ROLE")
            pairs[name.strip()] = role.strip()
        return pairs
