/**
 * The inbox: the person's alerts, newest first, live, filtered and grouped as notifications
 * group them; each alert a card (alert-card.tsx).
 */
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";

import { SignedOut } from "./api";
import { AlertCard } from "./alert-card";
import {
  acknowledge,
  type Alert,
  type Filters,
  type GroupBy,
  keeps,
  KINDS,
  listAlerts,
  Names,
  NO_FILTERS,
  orgUnits,
  type Since,
} from "./inbox-api";
import { type InboxStrings, inboxStrings } from "./inbox-strings";
import type { PageProps } from "./page";
import "./inbox.css";

type Connection = "connecting" | "live" | "trouble";

/** Newest update first; an entry replaced by a newer copy of itself. */
function merge(list: Alert[], incoming: Alert[]): Alert[] {
  const byId = new Map(list.map((alert) => [alert.id, alert]));
  for (const alert of incoming) {
    const known = byId.get(alert.id);
    if (known === undefined || known.updated_at <= alert.updated_at) {
      byId.set(alert.id, alert);
    }
  }
  return [...byId.values()].sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
}

interface Group {
  key: string;
  label: string;
  alerts: Alert[];
}

/** ``alerts`` in groups of equal ``by`` label, the group of the newest alert first. */
function grouped(
  alerts: Alert[],
  by: Exclude<GroupBy, "">,
  s: InboxStrings,
  units: ReadonlyMap<string, string>,
): Group[] {
  const groups = new Map<string, Group>();
  for (const alert of alerts) {
    let key: string;
    let label: string;
    if (by === "rule") {
      [key, label] = [alert.rule_id, alert.rule_name];
    } else if (by === "subject") {
      [key, label] = [alert.subject.id, alert.subject.name || alert.subject.id];
    } else if (by === "kind") {
      key = alert.kind ?? "";
      label = s.kind[key] ?? (key || s.noGroup);
    } else {
      key = alert.org_units?.[0] ?? "";
      label = key ? (units.get(key) ?? key) : s.noGroup;
    }
    const group = groups.get(key) ?? { key, label, alerts: [] };
    group.alerts.push(alert);
    groups.set(key, group);
  }
  return [...groups.values()];
}

/** The inbox page. */
export function Inbox({ api, person, me, t, language, onSignedOut }: PageProps) {
  const s = inboxStrings(language);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [groupBy, setGroupBy] = useState<GroupBy>("");
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState<ReadonlySet<string>>(new Set());
  const [units, setUnits] = useState<ReadonlyMap<string, string>>(new Map());
  // Rules met so far, for the rule filter (the rules API is HR's): id -> name.
  const [rules, setRules] = useState<ReadonlyMap<string, string>>(new Map());
  const names = useMemo(() => new Names(api), [api]);
  // Filters open on a wide screen; on a phone they fold away above the alerts.
  const [wide] = useState(() => window.matchMedia("(min-width: 40rem)").matches);
  const active =
    Object.entries(filters).filter(([, value]) => value !== "" && value !== false).length +
    (groupBy === "" ? 0 : 1);

  const fail = useCallback(
    (error: unknown) => {
      if (error instanceof SignedOut) {
        onSignedOut();
      } else {
        setProblem(error instanceof Error ? error.message : String(error));
      }
    },
    [onSignedOut],
  );

  useEffect(() => {
    orgUnits(api)
      .then((found) => setUnits(new Map(found.map((unit) => [unit.id, unit.name]))))
      .catch((error: unknown) => (error instanceof SignedOut ? onSignedOut() : undefined));
  }, [api, onSignedOut]);

  useEffect(() => {
    if (alerts === null) {
      return;
    }
    const missing = alerts.filter((alert) => !rules.has(alert.rule_id));
    if (missing.length > 0) {
      const more = new Map(rules);
      for (const alert of missing) more.set(alert.rule_id, alert.rule_name);
      setRules(more);
    }
  }, [alerts, rules]);

  useEffect(() => {
    const stop = new AbortController();
    setAlerts(null);
    setConnection("connecting");
    const keep = (alert: Alert) => keeps(filters, alert);
    // The stream takes recipient and severity; ``keep`` applies the rest to what it sends.
    api.follow(filters, stop.signal, {
      onListening: () => {
        setConnection("live");
        listAlerts(api, filters, person)
          .then((page) => {
            if (!stop.signal.aborted) {
              setAlerts((known) => merge(known ?? [], page.alerts).filter(keep));
              setCursor(page.next_cursor);
            }
          })
          .catch(fail);
      },
      onAlert: (incoming) => {
        const alert = incoming as Alert;
        setAlerts((known) =>
          keep(alert)
            ? merge(known ?? [], [alert])
            : (known ?? []).filter((other) => other.id !== alert.id),
        );
      },
      onTrouble: () => setConnection("trouble"),
      onSignedOut,
    });
    return () => stop.abort();
  }, [api, person, filters, fail, onSignedOut]);

  const more = () => {
    if (cursor === null) {
      return;
    }
    listAlerts(api, filters, person, cursor)
      .then((page) => {
        setAlerts((known) => merge(known ?? [], page.alerts));
        setCursor(page.next_cursor);
      })
      .catch(fail);
  };

  const changed = useCallback((alert: Alert) => {
    setAlerts((known) => merge(known ?? [], [alert]));
  }, []);

  const ack = (alert: Alert) => {
    setBusy((ids) => new Set(ids).add(alert.id));
    acknowledge(api, alert.id)
      .then(changed)
      .catch(fail)
      .finally(() =>
        setBusy((ids) => {
          const left = new Set(ids);
          left.delete(alert.id);
          return left;
        }),
      );
  };

  const set = <K extends keyof Filters>(name: K, value: Filters[K]) =>
    setFilters({ ...filters, [name]: value });

  const card = (alert: Alert) => (
    <AlertCard
      key={alert.id}
      alert={alert}
      api={api}
      me={me}
      person={person}
      names={names}
      units={units}
      t={t}
      s={s}
      language={language}
      busy={busy.has(alert.id)}
      onAcknowledge={() => ack(alert)}
      onChanged={changed}
      onError={fail}
    />
  );

  return (
    <section class="inbox" aria-labelledby="inbox-title">
      <div class="inbox-head">
        <h1 id="inbox-title">{t.inbox}</h1>
        <span class={`connection ${connection}`} data-testid="connection" data-state={connection}>
          {connection === "live" ? t.live : connection === "trouble" ? t.reconnecting : t.loading}
        </span>
      </div>
      <details class="more-filters" open={wide} data-testid="filters">
        <summary>{s.moreFilters(active)}</summary>
        <form class="filters" onSubmit={(event) => event.preventDefault()}>
          <label>
            {t.filterState}
            <select
              data-testid="filter-state"
              value={filters.state}
              onChange={(event) => set("state", event.currentTarget.value as Filters["state"])}
            >
              <option value="">{t.all}</option>
              <option value="firing">{t.state["firing"]}</option>
              <option value="resolved">{t.state["resolved"]}</option>
            </select>
          </label>
          <label>
            {t.filterSeverity}
            <select
              data-testid="filter-severity"
              value={filters.severity}
              onChange={(event) => set("severity", event.currentTarget.value as Filters["severity"])}
            >
              <option value="">{t.all}</option>
              <option value="critical">{t.severity["critical"]}</option>
              <option value="warning">{t.severity["warning"]}</option>
              <option value="info">{t.severity["info"]}</option>
            </select>
          </label>
          <label>
            {s.filterKind}
            <select
              data-testid="filter-kind"
              value={filters.kind}
              onChange={(event) => set("kind", event.currentTarget.value as Filters["kind"])}
            >
              <option value="">{t.all}</option>
              {KINDS.map((kind) => (
                <option key={kind} value={kind}>
                  {s.kind[kind]}
                </option>
              ))}
            </select>
          </label>
          <label>
            {s.filterRule}
            <select
              data-testid="filter-rule"
              value={filters.rule}
              onChange={(event) => set("rule", event.currentTarget.value)}
            >
              <option value="">{t.all}</option>
              {[...rules].map(([id, name]) => (
                <option key={id} value={id}>
                  {name}
                </option>
              ))}
            </select>
          </label>
          <label>
            {s.filterOrgUnit}
            <select
              data-testid="filter-org-unit"
              value={filters.orgUnit}
              onChange={(event) => set("orgUnit", event.currentTarget.value)}
            >
              <option value="">{t.all}</option>
              {[...units].map(([id, name]) => (
                <option key={id} value={id}>
                  {name}
                </option>
              ))}
            </select>
          </label>
          <label>
            {s.filterSince}
            <select
              data-testid="filter-since"
              value={filters.since}
              onChange={(event) => set("since", event.currentTarget.value as Since)}
            >
              {(Object.keys(s.since) as Since[]).map((since) => (
                <option key={since} value={since}>
                  {s.since[since]}
                </option>
              ))}
            </select>
          </label>
          <label>
            {s.groupBy}
            <select
              data-testid="group-by"
              value={groupBy}
              onChange={(event) => setGroupBy(event.currentTarget.value as GroupBy)}
            >
              {(Object.keys(s.group) as GroupBy[]).map((by) => (
                <option key={by} value={by}>
                  {s.group[by]}
                </option>
              ))}
            </select>
          </label>
          <label class="check">
            <input
              type="checkbox"
              data-testid="filter-mine"
              checked={filters.onlyMine}
              onChange={(event) => set("onlyMine", event.currentTarget.checked)}
            />
            {t.onlyMine}
          </label>
        </form>
      </details>
      {problem !== null && (
        <p class="problem" role="alert">
          {t.failed(problem)}
        </p>
      )}
      {alerts === null ? (
        <p class="quiet">{t.loading}</p>
      ) : alerts.length === 0 ? (
        <p class="quiet" data-testid="empty">
          {t.noAlerts}
        </p>
      ) : groupBy === "" ? (
        <ul class="alerts" data-testid="alerts">
          {alerts.map(card)}
        </ul>
      ) : (
        <div class="groups" data-testid="groups">
          {grouped(alerts, groupBy, s, units).map((group) => {
            const firing = group.alerts.filter((alert) => alert.state === "firing").length;
            return (
              <details
                key={group.key}
                class="group"
                open
                data-testid="group"
                data-key={group.key}
                data-count={group.alerts.length}
              >
                <summary>
                  <span class="group-label">{group.label}</span>{" "}
                  <span class="quiet" data-testid="group-count">
                    {s.groupCount(group.alerts.length, firing)}
                  </span>
                </summary>
                <ul class="alerts">{group.alerts.map(card)}</ul>
              </details>
            );
          })}
        </div>
      )}
      {cursor !== null && alerts !== null && (
        <button type="button" class="secondary" onClick={more}>
          {t.moreAlerts}
        </button>
      )}
    </section>
  );
}
