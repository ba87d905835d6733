"""Twisted Web resources of the API under ``/api/v1``.

Every answer is JSON, errors included (``{"error", "reason"}``): unknown paths (404), wrong
methods (405 with ``Allow``), bodies over the limit (413, read and discarded, never buffered),
wrong ``Content-Type`` (415), and whatever a feature refuses (its errors answered as
``dispatcher.api.errors.HTTP_REFUSALS`` says). A failure nobody expected is logged with its
traceback and answered 500 without details.

Operator endpoints (``/incidents...``, ``/callbacks...``) are for the console on the
center's own machine: they answer only requests from a loopback address, and, when an
operator token is configured, only with ``Authorization: Bearer <operator token>``.
"""

from __future__ import annotations

import json
from importlib import resources as importlib_resources
from typing import Any

import yaml
from twisted.web.resource import Resource
from twisted.web.server import Request

from dispatcher.alerts.service import AlertService
from dispatcher.api.alerts import AlertsResource, EnrolResource, IncidentsResource
from dispatcher.api.base import ApiRequest, JsonResource, check_operator
from dispatcher.api.callbacks import CallbacksResource, callback_document
from dispatcher.api.errors import ApiError
from dispatcher.hotline.service import HotlineService

# The plumbing lives in dispatcher.api.base, the resources in dispatcher.api.alerts and
# dispatcher.api.callbacks; their names stay importable from here.
__all__ = ["AlertsResource", "ApiRequest", "CallbacksResource", "EnrolResource",
           "IncidentsResource", "JsonResource", "build_api", "build_root", "callback_document",
           "check_operator", "openapi_document"]


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3 document (``dispatcher/api/openapi.yaml``)."""
    text = (importlib_resources.files("dispatcher.api") / "openapi.yaml").read_text("utf-8")
    return yaml.safe_load(text)


class StaticDocument(JsonResource):
    """A fixed document (the OpenAPI description)."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        """The document."""
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "not_found", "no such resource")
        request.setHeader(b"Content-Type", self.content_type)
        return self.body


def build_api(alerts: AlertService, operator_token: str | None = None,
              hotline: HotlineService | None = None) -> Resource:
    """The ``/api`` resource (``v1/...`` below it), to mount as the server root's ``api``.

    ``/callbacks`` is there when the hotline's service is given (``siaga up``)."""
    api = JsonResource()
    v1 = JsonResource()
    api.putChild(b"v1", v1)
    v1.putChild(b"alerts", AlertsResource(alerts))
    v1.putChild(b"enrol", EnrolResource(alerts))
    v1.putChild(b"incidents", IncidentsResource(alerts, operator_token))
    if hotline is not None:
        v1.putChild(b"callbacks", CallbacksResource(hotline, operator_token))
    spec = openapi_document()
    v1.putChild(b"openapi.json", StaticDocument(json.dumps(spec, indent=1).encode(),
                                                b"application/json"))
    text = (importlib_resources.files("dispatcher.api") / "openapi.yaml").read_bytes()
    v1.putChild(b"openapi.yaml", StaticDocument(text, b"application/yaml"))
    return api


def build_root(alerts: AlertService, operator_token: str | None = None) -> Resource:
    """A root with only ``/api`` (the API served alone)."""
    root = JsonResource()
    root.putChild(b"api", build_api(alerts, operator_token))
    return root
