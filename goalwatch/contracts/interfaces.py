"""What the registered services publish about themselves: OpenAPI documents and brokers.

Each app is built through the service registry (:func:`goalwatch.serving.registered_services`)
with the settings its :class:`~goalwatch.serving.ServiceInfo` gives for documents, whatever the
environment says (nothing connects: apps connect only when they start), so the documents are
what the running services serve at ``/openapi.json`` and subscribe and publish on NATS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from faststream.nats import NatsBroker

from goalwatch.serving import registered_services


@dataclass(frozen=True)
class ServiceDocuments:
    """The services' HTTP and NATS interfaces, as their apps declare them."""

    openapi: dict[str, str]
    """``openapi/<service>.json`` → document text, rendered like the other contract files."""
    brokers: dict[str, NatsBroker]
    """Service → its broker, for the services that use NATS."""


def service_documents() -> ServiceDocuments:
    """Build every registered service's app once and collect its interfaces."""
    openapi: dict[str, str] = {}
    brokers: dict[str, NatsBroker] = {}
    for name, info in registered_services().items():
        app = info.document_app()
        openapi[f"openapi/{name}.json"] = (
            json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
        broker = getattr(app.state, "broker", None)
        if isinstance(broker, NatsBroker):
            brokers[name] = broker
    return ServiceDocuments(openapi=openapi, brokers=brokers)
