/** The inbox: the person's alerts, newest first, live, filtered, each with its buttons. */
import { useCallback, useEffect, useState } from "preact/hooks";

import { type InboxAlert, type InboxFilters, SignedOut } from "./api";
import type { Language, Strings } from "./i18n";
import type { PageProps } from "./page";

type Props = PageProps;

type Connection = "connecting" | "live" | "trouble";

const NO_FILTERS: InboxFilters = { state: "", severity: "", onlyMine: false };

/** Newest update first; an entry replaced by a newer copy of itself. */
function merge(list: InboxAlert[], incoming: InboxAlert[]): InboxAlert[] {
  const byId = new Map(list.map((alert) => [alert.id, alert]));
  for (const alert of incoming) {
    const known = byId.get(alert.id);
    if (known === undefined || known.updated_at <= alert.updated_at) {
      byId.set(alert.id, alert);
    }
  }
  return [...byId.values()].sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
}

function when(iso: string, language: Language): string {
  return new Intl.DateTimeFormat(language === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(new Date(iso));
}

/** The inbox page. */
export function Inbox({ api, person, t, language, onSignedOut }: Props) {
  const [filters, setFilters] = useState<InboxFilters>(NO_FILTERS);
  const [alerts, setAlerts] = useState<InboxAlert[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [connection, setConnection] = useState<Connection>("connecting");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState<ReadonlySet<string>>(new Set());

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
    const stop = new AbortController();
    setAlerts(null);
    setConnection("connecting");
    const keep = (alert: InboxAlert) => filters.state === "" || alert.state === filters.state;
    api.follow(filters, stop.signal, {
      onListening: () => {
        setConnection("live");
        api
          .alerts(filters)
          .then((page) => {
            if (!stop.signal.aborted) {
              setAlerts((known) => merge(known ?? [], page.alerts).filter(keep));
              setCursor(page.next_cursor);
            }
          })
          .catch(fail);
      },
      onAlert: (alert) => {
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
  }, [api, filters, fail, onSignedOut]);

  const more = () => {
    if (cursor === null) {
      return;
    }
    api
      .alerts(filters, cursor)
      .then((page) => {
        setAlerts((known) => merge(known ?? [], page.alerts));
        setCursor(page.next_cursor);
      })
      .catch(fail);
  };

  const acknowledge = (alert: InboxAlert) => {
    setBusy((ids) => new Set(ids).add(alert.id));
    api
      .acknowledge(alert.id)
      .then((updated) => setAlerts((known) => merge(known ?? [], [updated])))
      .catch(fail)
      .finally(() =>
        setBusy((ids) => {
          const left = new Set(ids);
          left.delete(alert.id);
          return left;
        }),
      );
  };

  return (
    <section class="inbox" aria-labelledby="inbox-title">
      <div class="inbox-head">
        <h1 id="inbox-title">{t.inbox}</h1>
        <span class={`connection ${connection}`} data-testid="connection" data-state={connection}>
          {connection === "live" ? t.live : connection === "trouble" ? t.reconnecting : t.loading}
        </span>
      </div>
      <form class="filters" onSubmit={(event) => event.preventDefault()}>
        <label>
          {t.filterState}
          <select
            data-testid="filter-state"
            value={filters.state}
            onChange={(event) =>
              setFilters({ ...filters, state: event.currentTarget.value as InboxFilters["state"] })
            }
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
            onChange={(event) =>
              setFilters({
                ...filters,
                severity: event.currentTarget.value as InboxFilters["severity"],
              })
            }
          >
            <option value="">{t.all}</option>
            <option value="critical">{t.severity["critical"]}</option>
            <option value="warning">{t.severity["warning"]}</option>
            <option value="info">{t.severity["info"]}</option>
          </select>
        </label>
        <label class="check">
          <input
            type="checkbox"
            data-testid="filter-mine"
            checked={filters.onlyMine}
            onChange={(event) => setFilters({ ...filters, onlyMine: event.currentTarget.checked })}
          />
          {t.onlyMine}
        </label>
      </form>
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
      ) : (
        <ul class="alerts" data-testid="alerts">
          {alerts.map((alert) => (
            <AlertCard
              key={alert.id}
              alert={alert}
              t={t}
              language={language}
              person={person}
              busy={busy.has(alert.id)}
              onAcknowledge={() => acknowledge(alert)}
            />
          ))}
        </ul>
      )}
      {cursor !== null && alerts !== null && (
        <button type="button" class="secondary" onClick={more}>
          {t.moreAlerts}
        </button>
      )}
    </section>
  );
}

interface CardProps {
  alert: InboxAlert;
  t: Strings;
  language: Language;
  person: string;
  busy: boolean;
  onAcknowledge: () => void;
}

function AlertCard({ alert, t, language, person, busy, onAcknowledge }: CardProps) {
  const canAck = alert.state === "firing" && !alert.acked_by;
  return (
    <li
      class={`alert ${alert.severity} ${alert.state}`}
      data-testid="alert"
      data-alert-id={alert.id}
      data-subject={alert.subject.id}
      data-state={alert.state}
      data-acked-by={alert.acked_by ?? ""}
    >
      <div class="alert-head">
        <span class={`badge ${alert.severity}`}>{t.severity[alert.severity] ?? alert.severity}</span>
        <span class={`badge state ${alert.state}`}>{t.state[alert.state] ?? alert.state}</span>
        <span class="rule">{alert.rule_name}</span>
      </div>
      <p class="message">{alert.message}</p>
      <p class="meta">
        {t.about(alert.subject.name || alert.subject.id)} · {t.firedAt(when(alert.fired_at, language))}
        {alert.resolved_at ? ` · ${t.resolvedAt(when(alert.resolved_at, language))}` : ""}
      </p>
      {alert.acked_by && alert.acked_at ? (
        <p class="acked" data-testid="acked">
          {t.ackedBy(alert.acked_by === person ? t.you : alert.acked_by, when(alert.acked_at, language))}
        </p>
      ) : null}
      {canAck && (
        <div class="actions">
          <button type="button" data-testid="ack" disabled={busy} onClick={onAcknowledge}>
            {busy ? t.acknowledging : t.acknowledge}
          </button>
        </div>
      )}
    </li>
  );
}
