/**
 * What the inbox reads and writes, over ``api.get``/``api.send``: the notifier's alerts
 * (list, one with its deliveries, acknowledge, comment), silences, and the goals service's
 * org units and people (for names).
 */
import { type Api, ApiError, type InboxAlert, type InboxFilters } from "./api";

export type Kind = "threshold" | "overdue" | "fraud" | "dependency_impact";
export const KINDS: readonly Kind[] = ["threshold", "overdue", "fraud", "dependency_impact"];

/** How far back the time filter reaches ("": no limit). */
export type Since = "" | "1d" | "7d" | "30d";
const SINCE_DAYS: Record<Exclude<Since, "">, number> = { "1d": 1, "7d": 7, "30d": 30 };

/** The inbox's filters: those ``Api.follow`` sends to the stream, and the rest. */
export interface Filters extends InboxFilters {
  kind: "" | Kind;
  /** A rule id. */
  rule: string;
  /** An org unit id: alerts about someone in it or below it. */
  orgUnit: string;
  since: Since;
}

export const NO_FILTERS: Filters = {
  state: "",
  severity: "",
  onlyMine: false,
  kind: "",
  rule: "",
  orgUnit: "",
  since: "",
};

/** How the list is grouped: by the labels notifications group by (a route's group_by). */
export type GroupBy = "" | "rule" | "subject" | "org_unit" | "kind";

export interface Observation {
  event_id: string;
  time: string;
  value: number;
}

export interface Recipient {
  id: string;
  name: string;
  role: string;
  group?: string | null;
}

export interface ImpactStep {
  from_goal: string;
  to_goal: string;
  link: string;
  share: number;
}

export interface ImpactedGoal {
  goal_id: string;
  title?: string | null;
  status?: string | null;
  owner_id?: string | null;
  owner_name?: string | null;
  depth: number;
  weight: number;
  path: ImpactStep[];
}

export interface Impact {
  failing_goal: { goal_id: string; title: string; owner_id: string; status: string };
  affected: ImpactedGoal[];
  affected_total: number;
  owners_total: number;
}

export interface Comment {
  id: string;
  by: string;
  name?: string | null;
  at: string;
  text: string;
}

export interface Acknowledgement {
  by: string;
  at: string;
}

/** An inbox entry with the fields the full inbox shows. */
export interface Alert extends InboxAlert {
  history: Observation[];
  impact?: Impact | null;
  recipients: Recipient[];
  labels: Record<string, string>;
  org_units: string[];
  comments?: Comment[];
  acknowledgements?: Acknowledgement[];
}

/** One delivery of an episode on one channel (GET /v1/alerts/{id}'s ``deliveries``). */
export interface Delivery {
  id: string;
  channel: string;
  receiver?: string | null;
  recipients: Recipient[];
  status: string;
  state: string;
  at: string;
}

export interface AlertDetail extends Alert {
  deliveries: Delivery[];
}

export interface Page {
  alerts: Alert[];
  next_cursor: string | null;
}

export interface OrgUnit {
  id: string;
  name: string;
  kind: string;
  parent_id?: string | null;
}

export interface Silence {
  id: string;
  ends_at: string;
  comment: string;
}

/** The query of GET /v1/alerts for ``filters`` (``person``: the signed-in person). */
export function alertsQuery(filters: Filters, person: string): URLSearchParams {
  const query = new URLSearchParams();
  if (filters.onlyMine) query.set("recipient", person);
  if (filters.state) query.set("state", filters.state);
  if (filters.severity) query.set("severity", filters.severity);
  if (filters.kind) query.set("kind", filters.kind);
  if (filters.rule) query.set("rule", filters.rule);
  if (filters.orgUnit) query.set("org_unit", filters.orgUnit);
  const since = sinceTime(filters.since);
  if (since !== null) query.set("since", since);
  return query;
}

function sinceTime(since: Since): string | null {
  return since === "" ? null : new Date(Date.now() - SINCE_DAYS[since] * 86_400_000).toISOString();
}

/**
 * Whether ``alert`` passes the filters the stream does not apply itself (it takes
 * recipient and severity): an alert leaving them must leave the list too.
 */
export function keeps(filters: Filters, alert: Alert): boolean {
  const since = sinceTime(filters.since);
  return (
    (filters.state === "" || alert.state === filters.state) &&
    (filters.kind === "" || alert.kind === filters.kind) &&
    (filters.rule === "" || alert.rule_id === filters.rule) &&
    (filters.orgUnit === "" || (alert.org_units ?? []).includes(filters.orgUnit)) &&
    (since === null || alert.updated_at >= since)
  );
}

/** A page of the inbox, newest update first. */
export function listAlerts(
  api: Api,
  filters: Filters,
  person: string,
  cursor: string | null = null,
): Promise<Page> {
  const query = alertsQuery(filters, person);
  query.set("limit", "50");
  if (cursor !== null) query.set("cursor", cursor);
  return api.get<Page>("notifier", "/v1/alerts", query);
}

/** One episode with every delivery of it (who was told, on which channel). */
export function alertDetail(api: Api, id: string): Promise<AlertDetail> {
  return api.get<AlertDetail>("notifier", `/v1/alerts/${encodeURIComponent(id)}`);
}

export function acknowledge(api: Api, id: string): Promise<Alert> {
  return api.send<Alert>("notifier", "POST", `/v1/alerts/${encodeURIComponent(id)}/ack`, {
    comment: "",
  });
}

export function addComment(api: Api, id: string, text: string): Promise<Comment> {
  return api.send<Comment>("notifier", "POST", `/v1/alerts/${encodeURIComponent(id)}/comments`, {
    text,
  });
}

/** Silence this alert (its fingerprint) on every channel until ``hours`` from now. */
export function silenceAlert(
  api: Api,
  alert: Alert,
  hours: number,
  comment: string,
): Promise<Silence> {
  return api.send<Silence>("notifier", "POST", "/v1/silences", {
    matchers: [{ name: "fingerprint", op: "=", value: alert.fingerprint }],
    ends_at: new Date(Date.now() + hours * 3_600_000).toISOString(),
    comment,
  });
}

/** GET /v1/metrics/{metric}/history/{subject} on ingestion. */
export interface MetricHistory {
  points: Observation[];
  complete: boolean;
}

/** How far before the alert's first observation its chart reaches. */
const HISTORY_DAYS = 30;

/**
 * The subject's values of the alert's metric from 30 days before the alert's first
 * observation to its resolution (or now); ``null`` when ingestion will not say (the person
 * may read the alert but not the subject's values: a rule named them), or the alert has no
 * metric behind it.
 */
export async function metricHistory(api: Api, alert: Alert): Promise<Observation[] | null> {
  if (!alert.metric || alert.history.length === 0) {
    return null;
  }
  const first = alert.history.reduce((low, p) => (p.time < low ? p.time : low), alert.started_at);
  const since = new Date(new Date(first).getTime() - HISTORY_DAYS * 86_400_000);
  const query = new URLSearchParams({ since: since.toISOString() });
  if (alert.resolved_at) {
    // Until just after the resolution: the value that resolved it is in.
    query.set("until", new Date(new Date(alert.resolved_at).getTime() + 1000).toISOString());
  }
  const path = `/v1/metrics/${encodeURIComponent(alert.metric)}/history/${encodeURIComponent(
    alert.subject.id,
  )}`;
  try {
    return (await api.get<MetricHistory>("ingestion", path, query)).points;
  } catch (error) {
    if (error instanceof ApiError) return null;
    throw error;
  }
}

/** Every org unit the person may read, for the filter and for names. */
export async function orgUnits(api: Api): Promise<OrgUnit[]> {
  const query = new URLSearchParams({ limit: "1000" });
  return api.get<OrgUnit[]>("goals", "/v1/org-units", query);
}

/**
 * Names of people the inbox mentions by id only (who acknowledged): asked of goals once
 * each; ``null`` when goals does not tell (someone outside the person's part of the chart).
 */
export class Names {
  private readonly known = new Map<string, Promise<string | null>>();

  constructor(private readonly api: Api) {}

  remember(id: string, name: string | null | undefined): void {
    if (name && !this.known.has(id)) this.known.set(id, Promise.resolve(name));
  }

  of(id: string): Promise<string | null> {
    let found = this.known.get(id);
    if (found === undefined) {
      found = this.api
        .get<{ name: string }>("goals", `/v1/people/${encodeURIComponent(id)}`)
        .then((person) => person.name)
        .catch((error: unknown) => {
          if (error instanceof ApiError) return null;
          throw error;
        });
      this.known.set(id, found);
    }
    return found;
  }
}
