"""One error body for every HTTP error of every service: RFC 9457 ``application/problem+json``.

``type``, ``title``, ``status`` and ``detail`` are always there; an answer that has more to say
(which events were rejected, which were stored) adds members of its own, as the RFC allows.
Request validation errors name the field and what is wrong, without echoing the input back:
a bad field can be megabytes long, or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from goalwatch.checkpoints import NotCaughtUp
from goalwatch.contracts.metrics import PERSON_ID_PATTERN
from goalwatch.contracts.people import EMAIL_PATTERN

logger = logging.getLogger(__name__)

PATTERN_WORDS: dict[str, str] = {
    PERSON_ID_PATTERN: "a person id: 1 to 128 of A-Z a-z 0-9 . _ @ -, not starting with a dot",
    EMAIL_PATTERN: "an e-mail address: name@domain, without spaces",
}
"""How to say, in an answer, what a pattern of the contracts asks for."""

PROBLEM_JSON = "application/problem+json"
# An answer names what was wrong without carrying the input back: every piece of text taken
# from a request is cut to this many characters, and at most MAX_LISTED errors are listed.
MAX_ECHO = 100
MAX_LISTED = 100
# Seconds a client should wait after a 503: long enough for a Redis or NATS reconnect.
RETRY_AFTER_SECONDS = 5


class FieldProblem(BaseModel):
    """One invalid part of a request."""

    loc: str = Field(description="Where: body.<field>, query.<name> or path.<name>.")
    msg: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong with a request, and what to do about it."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="A URI naming the problem type.")
    title: str = Field(description="Short summary of the problem type (the HTTP reason).")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What went wrong with this request and how to fix it.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="Each invalid field, for a request that failed validation."
    )


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` from a request, fit to answer with: at most ``limit`` characters, and any lone
    surrogate (which no UTF-8 answer can carry) written as its escape, e.g. ``\\ud800``."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(
    status: int,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **members: Any,
) -> JSONResponse:
    """A problem+json answer; ``members`` are extension members (JSON-able values)."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **members,
    }
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def problem_responses(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each status with when it is answered, body :class:`Problem`."""
    return {
        status: {
            "description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status, description in described.items()
    }


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every HTTP error of ``app`` as problem+json, 500s included."""

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 400 and exc.__cause__ is not None:
            detail = _unreadable_body(exc.__cause__)
        return problem(exc.status_code, detail, headers=exc.headers)

    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": ".".join(clip(str(part)) for part in error["loc"]),
                "msg": clip(_in_words(error), 500),
            }
            for error in exc.errors()
        ]
        count = len(errors)
        first = f"{errors[0]['loc']}: {errors[0]['msg']}" if errors else "invalid request"
        return problem(
            422,
            f"{count} invalid field{'s' if count != 1 else ''} in the request; first: {first}",
            errors=errors[:MAX_LISTED],
        )

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        logger.warning(
            "%s %s: a dependency is unavailable: %r", request.method, request.url.path, exc
        )
        return problem(
            503,
            f"the data store (Redis) did not answer; retry after {RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    async def catching_up(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem(
            503,
            "the service is replaying what its data store (Redis) lost in a restart and could "
            f"not finish yet; retry after {RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(
            500,
            "the service failed to answer this request; the error is in its log. "
            "Retrying may help if the cause was passing.",
        )

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(RedisConnectionError, unavailable)
    app.add_exception_handler(RedisTimeoutError, unavailable)
    app.add_exception_handler(NotCaughtUp, catching_up)
    app.add_exception_handler(Exception, internal_error)


def _in_words(error: Mapping[str, Any]) -> str:
    """Pydantic's message, or a plainer one where it says less than the sender needs."""
    kind, ctx = error.get("type"), error.get("ctx") or {}
    if kind == "string_unicode":
        return (
            "not valid Unicode: it holds a lone surrogate (an unpaired \\ud800-\\udfff "
            "escape); send the text as valid UTF-8"
        )
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_WORDS:
        return f"must be {PATTERN_WORDS[ctx['pattern']]}"
    return str(error.get("msg", "invalid"))


def _unreadable_body(cause: BaseException) -> str:
    """Why FastAPI could not parse a JSON body, in words (its own answer says only that)."""
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return (
            "the body is not readable JSON: it holds an integer literal of more than 4300 "
            "digits; send numbers that fit in a 64-bit float"
        )
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not valid UTF-8: send JSON encoded as UTF-8"
    return "the body could not be read as JSON; send one JSON document encoded as UTF-8"
