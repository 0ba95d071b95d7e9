"""The console service's Prometheus metrics, on its own registry (the HTTP metrics every
service has; the console keeps no counters of its own)."""

from goalwatch.telemetry import service_registry

REGISTRY = service_registry()
