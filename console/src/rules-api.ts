/**
 * The rules page's calls: the evaluator's rules API (/v1/rules…) and, for what each rule
 * fired, the notifier's inbox (GET /v1/alerts?rule=&since=), which an HR admin reads whole.
 */
import type { Api } from "./api";

/** A rule as GET /v1/rules lists it (the fields the page uses). */
export interface Rule {
  id: string;
  name: string;
  description: string | null;
  kind: string;
  metric: string | null;
  severity: "info" | "warning" | "critical";
  file: string;
  enabled: boolean;
  version: number | null;
  changed_at: string | null;
  changed_by: string | null;
  comment: string | null;
  /** The rule's YAML text. */
  source: string | null;
}

/** One problem of a draft, as `goalwatch rules lint` reports it. */
export interface LintProblem {
  file: string;
  line: number | null;
  column: number | null;
  field: string | null;
  message: string;
  text: string;
}

/** POST /v1/rules/validate's answer. */
export interface Validation {
  valid: boolean;
  problems: LintProblem[];
}

/** POST /v1/rules/{id}/test's answer. */
export interface TestResult {
  passed: boolean;
  name: string;
  rules: string[];
  draft: boolean;
  failures: string[];
}

/** POST /v1/rules/{id}/backtest's answer (what the page shows of it). */
export interface Backtest {
  since: string;
  draft: boolean;
  events: number;
  skipped: number;
  fired: number;
  resolved: number;
  /** Firings per UTC day (YYYY-MM-DD) of their event time, oldest first. */
  fired_per_day: Record<string, number>;
  truncated: boolean;
}

/** One version of a rule, newest first from GET /v1/rules/{id}/versions. */
export interface RuleVersion {
  rule_id: string;
  version: number;
  action: string;
  enabled: boolean;
  author: string;
  at: string;
  comment: string;
  file: string | null;
  /** The text at this version; null once deleted. */
  source: string | null;
}

/** Episodes counted per rule: ``count``, and whether there were more than were read. */
export interface Fired {
  count: number;
  more: boolean;
}

const PAGE = 500;
/** Pages of the inbox read per rule for its 30-day count; beyond, the list says "N+". */
const MOST_PAGES = 4;

const path = (id: string, tail = "") => `/v1/rules/${encodeURIComponent(id)}${tail}`;

/** The rules API, as the signed-in person calls it. */
/** GET /v1/rules/{id}/tests: one test file shipped with the rules. */
export interface ShippedTest {
  file: string;
  name: string;
  text: string;
}

export class RulesApi {
  constructor(private readonly api: Api) {}

  list(): Promise<Rule[]> {
    return this.api.get<Rule[]>("evaluator", "/v1/rules");
  }

  get(id: string): Promise<Rule> {
    return this.api.get<Rule>("evaluator", path(id));
  }

  validate(source: string, file: string): Promise<Validation> {
    return this.api.send<Validation>("evaluator", "POST", "/v1/rules/validate", { source, file });
  }

  create(source: string, comment: string): Promise<Rule> {
    return this.api.send<Rule>("evaluator", "POST", "/v1/rules", { source, comment });
  }

  update(id: string, source: string, comment: string, version: number | null): Promise<Rule> {
    return this.api.send<Rule>("evaluator", "PUT", path(id), {
      source,
      comment,
      ...(version === null ? {} : { version }),
    });
  }

  /** The test files shipped beside the rules (``rules/tests/``) that exercise rule ``id``. */
  shipped(id: string): Promise<ShippedTest[]> {
    return this.api.get<ShippedTest[]>("evaluator", path(id, "/tests"));
  }

  /** Run one rule test file (YAML text) against the draft ``source`` of rule ``id``. */
  test(id: string, tests: string, source: string): Promise<TestResult> {
    return this.api.send<TestResult>("evaluator", "POST", path(id, "/test"), { tests, source });
  }

  /** What the draft ``source`` of rule ``id`` would have fired over the stored events. */
  backtest(id: string, source: string, since: string): Promise<Backtest> {
    return this.api.send<Backtest>("evaluator", "POST", path(id, "/backtest"), { source, since });
  }

  versions(id: string): Promise<RuleVersion[]> {
    return this.api.get<RuleVersion[]>("evaluator", path(id, "/versions"));
  }

  rollback(id: string, version: number, comment: string): Promise<Rule> {
    return this.api.send<Rule>("evaluator", "POST", path(id, "/rollback"), { version, comment });
  }

  setEnabled(id: string, on: boolean, comment: string): Promise<Rule> {
    return this.api.send<Rule>("evaluator", "POST", path(id, on ? "/enable" : "/disable"), {
      comment,
    });
  }

  /**
   * Alert episodes of ``rule`` that fired since ``since``, from the notifier's inbox.
   * The inbox's ``since`` is of an episode's latest update, so episodes that fired earlier
   * and changed since are read too and left out by their ``fired_at``.
   */
  async fired(rule: string, since: Date): Promise<Fired> {
    let count = 0;
    let cursor: string | null = null;
    for (let page = 0; page < MOST_PAGES; page += 1) {
      const query = new URLSearchParams({
        rule,
        since: since.toISOString(),
        limit: String(PAGE),
      });
      if (cursor !== null) {
        query.set("cursor", cursor);
      }
      const found: { alerts: { fired_at: string }[]; next_cursor: string | null } =
        await this.api.get("notifier", "/v1/alerts", query);
      count += found.alerts.filter((alert) => new Date(alert.fired_at) >= since).length;
      cursor = found.next_cursor;
      if (cursor === null) {
        return { count, more: false };
      }
    }
    return { count, more: true };
  }
}
