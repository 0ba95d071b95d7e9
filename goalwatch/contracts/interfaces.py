"""The OpenAPI documents of the registered services' HTTP APIs, for ``contracts/openapi/``.

Each app is built through the service registry (:func:`goalwatch.serving.registered_services`)
with the settings its :class:`~goalwatch.serving.ServiceInfo` gives for documents, whatever the
environment says (nothing connects: apps connect only when they start), so the documents are
what the running services serve at ``/openapi.json``.
"""

from __future__ import annotations

import json

from goalwatch.serving import registered_services


def render_openapi() -> dict[str, str]:
    """``openapi/<service>.json`` → document text, rendered like the other contract files."""
    return {
        f"openapi/{name}.json": json.dumps(
            info.document_app().openapi(), indent=2, sort_keys=True, ensure_ascii=False
        )
        + "\n"
        for name, info in registered_services().items()
    }
