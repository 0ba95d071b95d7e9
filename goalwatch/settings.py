"""Settings fragments shared by every service.

Settings are read from the environment (prefix ``GOALWATCH_``) only when a service's
``create_app``/``main`` builds them; tests construct them directly instead.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """What every service needs: where NATS and Redis are, where to listen, how to log.

    Every setting is read from the environment variable `GOALWATCH_<FIELD NAME>`; a service's
    port is a field named for the service (`goals_port` is `GOALWATCH_GOALS_PORT`).
    """

    model_config = SettingsConfigDict(env_prefix="GOALWATCH_", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server URL.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL.")
    host: str = Field("127.0.0.1", description="Interface the HTTP API listens on.")
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")
