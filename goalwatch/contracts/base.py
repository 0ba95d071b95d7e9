"""Common base for every message model that crosses a service boundary."""

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """Frozen, strict message: unknown fields are an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)
