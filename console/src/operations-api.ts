/**
 * The operations page's calls: each service's consumer backlog (GET /v1/<service>/consumers),
 * dead letters (goals' GET /v1/dead-letters) and their replay by the service that publishes
 * their origin subject, failed deliveries (the notifier's GET /v1/deliveries). All of them are the operator's alone; the services refuse anyone else.
 */
import type { Api, Service } from "./api";

/** One durable consumer's counts, as its service last read them from JetStream. */
export interface ConsumerLag {
  stream: string;
  consumer: string;
  /** Not delivered yet: the backlog. */
  pending: number;
  /** Delivered, not acknowledged yet: in flight. */
  ack_pending: number;
  redelivered: number;
  age_seconds: number;
}

/** GET /v1/<service>/consumers. */
export interface ServiceConsumers {
  service: string;
  every_seconds: number;
  consumers: ConsumerLag[];
}

/** The services that have durable consumers, in the pipeline's order. */
export const CONSUMING: readonly Service[] = ["ingestion", "evaluator", "notifier"];

export interface ReplayRecord {
  at: string;
  by: string;
  subject: string;
  stream: string;
  sequence: number;
  /** The service that replayed it. */
  service?: string;
}

/** The services that replay dead letters: each one those whose origin subject it publishes. */
export type Replayer = Extract<Service, "goals" | "evaluator" | "ingestion">;

/** One dead letter, as goals lists it. */
export interface DeadLetter {
  sequence: number;
  subject: string;
  origin_subject: string;
  reason: string;
  errors: { loc: string; msg: string; event_id?: string | null }[];
  payload: string;
  payload_truncated: boolean;
  /** Only the payload's beginning is in this list (the letter holds more). */
  payload_shortened: boolean;
  payload_bytes?: number | null;
  at: string;
  /** Whether a service replays it (`replayed_by`); if not, only the NATS operator can. */
  replayable: boolean;
  /** The service whose NATS user publishes its origin subject, and so replays it. */
  replayed_by?: Replayer | null;
  replayed: ReplayRecord | null;
}

export interface DeadLetterPage {
  dead_letters: DeadLetter[];
  next_cursor: string | null;
}

/** One delivery outcome of the notifier's log (the fields the page shows). */
export interface Delivery {
  id: string;
  fingerprint: string;
  rule_id: string;
  state: string;
  channel: string;
  receiver?: string | null;
  status: "sent" | "failed" | "silenced" | "held";
  attempts: number;
  error?: string | null;
  at: string;
}

interface DeliveryPage {
  deliveries: Delivery[];
  next_cursor: string | null;
}

/** How far back the failures are counted, and how many are read at most. */
export const FAILURE_WINDOW_HOURS = 24;
export const FAILURE_LIMIT = 500;

export function consumersOf(api: Api, service: Service): Promise<ServiceConsumers> {
  return api.get<ServiceConsumers>(service, `/v1/${service}/consumers`);
}

export function deadLetters(api: Api): Promise<DeadLetterPage> {
  return api.get<DeadLetterPage>("goals", "/v1/dead-letters", new URLSearchParams({ limit: "50" }));
}

/** POST /v1/<service>/dead-letters/{sequence}/replay: replayed by the service that owns the
 * letter's origin subject. */
interface Replayed {
  sequence: number;
  origin_subject: string;
  replayed: ReplayRecord;
}

/** Replays ``letter`` through the service that replays it (goals' own route for goals). */
export async function replay(api: Api, letter: DeadLetter): Promise<DeadLetter> {
  const service = letter.replayed_by ?? "goals";
  if (service === "goals") {
    return api.send<DeadLetter>("goals", "POST", `/v1/dead-letters/${letter.sequence}/replay`);
  }
  const path = `/v1/${service}/dead-letters/${letter.sequence}/replay`;
  const done = await api.send<Replayed>(service, "POST", path);
  return { ...letter, replayed: done.replayed };
}

/** The failed deliveries of the last :data:`FAILURE_WINDOW_HOURS`, newest first. */
export async function failures(api: Api, now: Date = new Date()): Promise<Delivery[]> {
  const since = new Date(now.getTime() - FAILURE_WINDOW_HOURS * 3600 * 1000);
  const query = new URLSearchParams({
    status: "failed",
    since: since.toISOString(),
    limit: String(FAILURE_LIMIT),
  });
  return (await api.get<DeliveryPage>("notifier", "/v1/deliveries", query)).deliveries;
}

/** Failures counted by channel, most first (then by name). */
export function byChannel(found: Delivery[]): [string, number][] {
  const counts = new Map<string, number>();
  for (const delivery of found) {
    counts.set(delivery.channel, (counts.get(delivery.channel) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

/** A row of the lag table: one consumer, or the partitions of one (``evaluator-p0..p15``)
 * added up, naming those that are behind. */
export interface LagRow {
  stream: string;
  consumer: string;
  partitions: number;
  pending: number;
  ack_pending: number;
  redelivered: number;
  /** The oldest reading among them. */
  age_seconds: number;
  /** Partitions with a backlog, as ``p3``. */
  behind: string[];
}

const PARTITION = /^(.*)-p(\d+)$/;

/** ``consumers`` as table rows: partitions of one consumer on one stream become one row. */
export function lagRows(consumers: ConsumerLag[]): LagRow[] {
  const rows = new Map<string, LagRow>();
  for (const c of consumers) {
    const part = PARTITION.exec(c.consumer);
    const name = part ? `${part[1]}-p*` : c.consumer;
    const key = `${c.stream}/${name}`;
    const row = rows.get(key) ?? {
      stream: c.stream,
      consumer: name,
      partitions: 0,
      pending: 0,
      ack_pending: 0,
      redelivered: 0,
      age_seconds: 0,
      behind: [],
    };
    row.partitions += part ? 1 : 0;
    row.pending += c.pending;
    row.ack_pending += c.ack_pending;
    row.redelivered += c.redelivered;
    row.age_seconds = Math.max(row.age_seconds, c.age_seconds);
    if (part && c.pending > 0) {
      row.behind.push(`p${part[2]}`);
    }
    rows.set(key, row);
  }
  const natural = new Intl.Collator("en", { numeric: true });
  for (const row of rows.values()) {
    row.behind.sort(natural.compare);
  }
  return [...rows.values()].sort(
    (a, b) => natural.compare(a.stream, b.stream) || natural.compare(a.consumer, b.consumer),
  );
}
