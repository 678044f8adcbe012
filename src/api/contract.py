"""The public API's contract, declared once: pydantic models with their limits, and the operation
each route is.

The models validate what the api checks itself (query parameters everywhere, the posts bodies)
and describe what it passes on to auth and images; api.openapi builds the OpenAPI document from
them and from the routes' declarations, so the limits the document states are the ones applied.
Every refusal is the project's problem+json, never pydantic's own error format.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Annotated, Any, Literal

from flask import g, request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from servicekit.errors import ApiError
from servicekit.validation import invalid, json_body

JSON = "application/json"
MULTIPART = "multipart/form-data"
# Any route that reaches the database or another service may answer these.
UPSTREAM_ERRORS = ("502", "503", "504")
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ImageType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


def query_int(default: int, minimum: int, maximum: int, description: str) -> Any:
    """An integer query parameter: ASCII digits only (int() alone would take ' 5' or '+5')."""

    def digits(raw: Any) -> Any:
        if isinstance(raw, str) and not (raw.isascii() and raw.isdigit()):
            raise invalid_value(f"must be an integer from {minimum} to {maximum}")
        return raw

    return Annotated[
        int, Field(default, ge=minimum, le=maximum, description=description), BeforeValidator(digits)
    ]


def invalid_value(message: str) -> PydanticCustomError:
    """A rule's own message, reported as it is (a plain ValueError gets pydantic's prefix)."""
    return PydanticCustomError("invalid", message)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Body(Model):
    # JSON has its types: 42 is not a string, true is not an integer.
    model_config = ConfigDict(extra="forbid", strict=True)


class NoQuery(Model):
    """A route that takes no query parameters: any one given is a 400."""


# -- what pydantic reports, in this API's words ------------------------------------------------
_MESSAGES = {
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "bool_type": "must be a boolean",
}


def _refusal(error: ValidationError, unknown: str) -> ApiError:
    errors = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        message = unknown if item["type"] == "extra_forbidden" else _MESSAGES.get(item["type"], item["msg"])
        errors.append({"field": field, "message": message})
    errors.sort(key=lambda e: e["field"])
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return ApiError(400, detail, type_="validation-error", errors=errors)


def parse_query(model: type[Model]) -> Model:
    repeated = sorted(name for name in request.args if len(request.args.getlist(name)) > 1)
    if repeated:
        # Which of two values was meant cannot be told; neither is taken.
        raise invalid(repeated[0], "must be given at most once")
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as error:
        raise _refusal(error, "is not a known query parameter") from None


def parsed_query() -> Model:
    """This request's query parameters, as the operation's model validated them."""
    return g.query


def parse_body(model: type[Body]) -> Body:
    try:
        return model.model_validate(json_body())
    except ValidationError as error:
        raise _refusal(error, "is not a known field") from None


@dataclasses.dataclass(frozen=True)
class Operation:
    """One route and method of the public API, as the document states it."""

    operation_id: str
    summary: str
    tag: str
    responses: dict[str, Any]
    errors: tuple[str, ...] = ()
    query: type[Model] = NoQuery
    path: type[Model] | None = None
    body: type[BaseModel] | None = None
    body_type: str = JSON
    # Whether the api validates the body itself; a forwarded body is the service's to judge.
    validate_body: bool = True
    secured: bool = False
    deprecated: bool = False


def operation(declared: Operation, *, login: Callable | None = None) -> Callable:
    """Declare a view as ``declared``: its query (and body) are validated by the models, then
    the caller is verified when the operation is secured (``login`` wraps the view)."""

    def decorate(view: Callable) -> Callable:
        inner = view
        if declared.body is not None and declared.validate_body:

            @functools.wraps(view)
            def with_body(*args, **kwargs):
                return view(*args, body=parse_body(declared.body), **kwargs)

            inner = with_body
        if declared.secured:
            if login is None:
                raise TypeError(f"{declared.operation_id} is secured: pass the login check")
            inner = login(inner)

        # Query first, as before a caller is verified: a misspelt parameter is the same 400 for all.
        @functools.wraps(view)
        def validated(*args, **kwargs):
            g.query = parse_query(declared.query)
            return inner(*args, **kwargs)

        validated.operation = declared
        return validated

    return decorate


# -- the models -------------------------------------------------------------------------------
class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    class FieldError(BaseModel):
        field: str
        message: str

    type: str
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    errors: list[FieldError] | None = Field(None, description="The bad fields, on a validation-error.")


# -- auth, behind the gateway (auth validates these bodies itself) ------------------------------
# auth's own rules (auth/routes.py, auth/passwords.py); auth is a separate image, so they are
# restated here and tests/unit/api/test_openapi.py holds the two equal.
USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]{3,32}$"
PASSWORD_MIN_CHARACTERS = 8
PASSWORD_MAX_BYTES = 72


class Registration(Body):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(
        min_length=PASSWORD_MIN_CHARACTERS,
        max_length=PASSWORD_MAX_BYTES,
        pattern=r"^[^\u0000]*$",
        description=f"{PASSWORD_MIN_CHARACTERS} characters or more, at most {PASSWORD_MAX_BYTES} bytes "
        "in UTF-8, no NUL.",
    )


class Credentials(Body):
    username: str
    password: str


class User(BaseModel):
    id: int
    username: str


class Token(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int = Field(description="seconds")


class Verification(BaseModel):
    """auth's answer to POST /verify, which the gateway asks about every bearer token."""

    model_config = ConfigDict(strict=True)

    valid: Literal[True]
    user_id: int
    username: str


# -- images, behind the gateway ----------------------------------------------------------------
# The images service's own paging (images/routes.py): offsets, and its own page size.
IMAGES_DEFAULT_PAGE_SIZE = 20
IMAGES_MAX_PAGE_SIZE = 100
IMAGES_MAX_OFFSET = 1_000_000


class ImagePageQuery(Model):
    limit: query_int(IMAGES_DEFAULT_PAGE_SIZE, 1, IMAGES_MAX_PAGE_SIZE, "Page size.")
    offset: query_int(0, 0, IMAGES_MAX_OFFSET, "Images to skip.")


class Image(BaseModel):
    filename: str
    original_filename: str | None = None
    content_type: ImageType
    size: int = Field(ge=0)
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    created_at: str | None = Field(None, json_schema_extra={"format": "date-time"})


class ImagePage(Model):
    items: list[Image] = Field(max_length=IMAGES_MAX_PAGE_SIZE)
    limit: int = Field(ge=1, le=IMAGES_MAX_PAGE_SIZE)
    offset: int = Field(ge=0, le=IMAGES_MAX_OFFSET)
    next_offset: int | None = Field(description="The offset of the next page, or null on the last page.")


class ImageStats(BaseModel):
    count: int = Field(ge=0)
    total_bytes: int = Field(ge=0)
    by_content_type: dict[ImageType, int] = Field(description="Images of each content type, 0 included.")


class ImageUpload(BaseModel):
    file: bytes = Field(
        json_schema_extra={"format": "binary"},
        description="JPEG, PNG, GIF or WebP, decided from the content.",
    )
