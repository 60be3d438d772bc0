"""Errors of the platform, each rendering itself as an NGSI-LD ProblemDetails answer.

ETSI GS CIM 009 clause 5.5.2 fixes the error type URIs and their HTTP status codes; RFC 7807
fixes the body shape (``type``, ``title``, ``detail``).  Both are part of the contract with the
gateway, so their definitions live in :mod:`city_platform.models`.

::

    PlatformError                      500 InternalError
    ├── InvalidRequest                 400 (request syntax: bad JSON, bad parameter)
    ├── BadRequestData                 400 (well-formed but invalid content)
    ├── AlreadyExists                  409
    ├── ResourceNotFound               404
    ├── NonexistentTenant              404
    ├── OperationNotSupported          422
    ├── TooComplexQuery                403
    ├── LdContextNotAvailable          503
    ├── NotAcceptable                  406 (no representation matches Accept)
    └── UnsupportedMediaType           415 (Content-Type is not JSON / JSON-LD)

The API's authentication errors (401/403, RFC 6750 3) are not NGSI-LD error types: they have
their own root, ``city_platform.auth.AuthError``, answered by ``api/bearer.py``.
"""

from __future__ import annotations

from typing import ClassVar

from city_platform.models import ErrorType, ProblemDetails, error_type_uri


class PlatformError(Exception):
    """Root of every error the platform answers with; unexpected ones map to 500."""

    status: ClassVar[int] = 500
    type_name: ClassVar[ErrorType] = "InternalError"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def type_uri(self) -> str:
        return error_type_uri(self.type_name)

    def problem(self) -> ProblemDetails:
        """The RFC 7807 body, with the NGSI-LD error type URI."""
        return {"type": self.type_uri, "title": self.title, "detail": self.detail}


class InvalidRequest(PlatformError):
    status = 400
    type_name = "InvalidRequest"
    title = "Invalid request"


class BadRequestData(PlatformError):
    status = 400
    type_name = "BadRequestData"
    title = "Bad request data"


class AlreadyExists(PlatformError):
    status = 409
    type_name = "AlreadyExists"
    title = "Already exists"


class ResourceNotFound(PlatformError):
    status = 404
    type_name = "ResourceNotFound"
    title = "Resource not found"


class NonexistentTenant(PlatformError):
    status = 404
    type_name = "NonexistentTenant"
    title = "Nonexistent tenant"


class OperationNotSupported(PlatformError):
    status = 422
    type_name = "OperationNotSupported"
    title = "Operation not supported"


class TooComplexQuery(PlatformError):
    status = 403
    type_name = "TooComplexQuery"
    title = "Too complex query"


class LdContextNotAvailable(PlatformError):
    status = 503
    type_name = "LdContextNotAvailable"
    title = "LD context not available"


class NotAcceptable(PlatformError):
    status = 406
    type_name = "NotAcceptable"
    title = "Not acceptable"


class UnsupportedMediaType(PlatformError):
    status = 415
    type_name = "UnsupportedMediaType"
    title = "Unsupported media type"
