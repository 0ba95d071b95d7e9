"""The access policy of every route of every service, in one table to review.

Each route names one of these (:mod:`goalwatch.auth.policy`). Roles see and do their part
org-wide; ``people=True`` also lets any signed-in person in, and the route then limits them
to their own part of the org chart (:mod:`goalwatch.auth.scope`): a manager their reports,
an HRBP their org units, everyone themselves.
"""

from __future__ import annotations

from goalwatch.auth.policy import Public, policy
from goalwatch.auth.roles import Role

HR, OPS = Role.HR_ADMIN, Role.OPERATOR

# Every service
HEALTH = Public("liveness and readiness probes; they tell whether NATS and Redis answer")
METRICS = Public(
    "Prometheus scrapes it; counters of the service's work, no person's data (keep the port "
    "inside the cluster, docs/security.md)"
)
API_DOCS = Public("the API's description (OpenAPI, Swagger UI, ReDoc); no data")
# Every service with durable consumers: their backlog, as /metrics has it (the console's
# operations page reads it; payloads of no message are in it).
CONSUMERS_READ = policy("read the service's consumer lag", OPS)

# ingestion
# Metric data, already kept in its own stream: in the audit log it would drown the changes.
EVENTS_PUBLISH = policy("publish metric events", Role.PUBLISHER, audited=False)
# A person's values: not audited, like every read; scoped like the alerts about them.
METRIC_HISTORY_READ = policy("read a person's metric history", HR, people=True)
CATALOGUE_READ = policy(
    "read the metric catalogue", HR, OPS, Role.PUBLISHER, Role.SERVICE, people=True
)

# evaluator
RULES_READ = policy("read rules", HR, OPS, Role.SERVICE)
RULES_WRITE = policy("change rules", HR)
RULES_CHECK = policy("test or backtest rules", HR)

# goals
SIGNED_IN = policy("read who they are and the roles they hold", HR, OPS, people=True)
AUDIT_READ = policy("read the audit log", HR, OPS)
# Dead letters hold whole messages (people's metric values among them): operators only.
DEAD_LETTERS_READ = policy("read dead letters", OPS)
DEAD_LETTERS_REPLAY = policy("replay dead letters onto their original subject", OPS)
PEOPLE_READ = policy("read people", HR, Role.SERVICE, Role.DIRECTORY_WRITER, people=True)
PEOPLE_WRITE = policy("change people", HR, Role.DIRECTORY_WRITER)
ORG_UNITS_READ = policy(
    "read org units", HR, Role.SERVICE, Role.DIRECTORY_WRITER, Role.GOALS_WRITER, people=True
)
ORG_UNITS_WRITE = policy("change org units", HR, Role.DIRECTORY_WRITER)
GOALS_READ = policy("read goals", HR, Role.SERVICE, Role.GOALS_WRITER, people=True)
GOALS_WRITE = policy("change goals", HR, Role.GOALS_WRITER)
CHECK_INS_WRITE = policy("check in on goals", HR, Role.GOALS_WRITER, people=True)
API_KEYS_READ = policy("read API keys", HR, OPS)
API_KEYS_WRITE = policy("create or revoke API keys", HR, OPS)
API_KEYS_VERIFY = policy("verify API keys presented to another service", Role.SERVICE)
ROLE_GRANTS_READ = policy("read the roles granted in goalwatch", HR, OPS)
ROLE_GRANTS_LOOKUP = policy(
    "read the roles granted to a person in goalwatch", HR, OPS, Role.SERVICE, people=True
)
ROLE_GRANTS_WRITE = policy(
    "grant or revoke roles (hr_admin by an HR admin, operator by an operator)", HR, OPS
)

# notifier
ALERTS_READ = policy("read alerts", HR, people=True)
ALERTS_ACT = policy("acknowledge or resolve alerts", HR, people=True)
ALERTS_COMMENT = policy("comment on alerts", HR, people=True)
ACK_LINK = Public(
    "a signed, expiring, single-purpose link from a notification: the link is the credential"
)
DELIVERIES_READ = policy("read the delivery log", HR, OPS)
SILENCES_READ = policy("read silences", HR, OPS)
SILENCES_WRITE = policy("create or expire silences", HR)
ROUTES_READ = policy("read routing", HR, OPS)
ROUTES_TEST = policy("test routing", HR, OPS)
ROUTES_RELOAD = policy("reload routing", HR, OPS)

# console
CONSOLE_FILES = Public(
    "the web console's page and built scripts: no data; the page signs in and calls the "
    "APIs above with the person's own token",
    audited=False,
)
CONSOLE_CONFIG = Public(
    "where the identity provider and the APIs are, and the console's public client id: no "
    "data, no secret",
    audited=False,
)
