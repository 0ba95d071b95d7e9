/**
 * One alert in the inbox: what it says, the metric's history, the goals a failing goal
 * puts at risk, who else was told (and where), comments, and its buttons.
 */
import { useEffect, useState } from "preact/hooks";

import type { Api, Me } from "./api";
import type { Language, Strings } from "./i18n";
import {
  addComment,
  type Alert,
  type AlertDetail,
  alertDetail,
  type Comment,
  type Delivery,
  metricHistory,
  type Names,
  type Observation,
  type Recipient,
  silenceAlert,
} from "./inbox-api";
import type { InboxStrings } from "./inbox-strings";
import { MetricChart } from "./metric-chart";
import { holds } from "./page";

export function when(iso: string, language: Language): string {
  return new Intl.DateTimeFormat(language === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(new Date(iso));
}

const COLOURS: Record<string, string> = {
  info: "#2f6f9f",
  warning: "#b26b00",
  critical: "#b3261e",
};

/** ``id``'s name: from the people the alert names, else asked of goals; the id meanwhile. */
function useName(names: Names, id: string | null | undefined, known: Recipient[]): string {
  const listed = id ? known.find((person) => person.id === id)?.name : undefined;
  const [name, setName] = useState<string | null>(listed ?? null);
  useEffect(() => {
    if (!id || listed) {
      setName(listed ?? null);
      return;
    }
    let current = true;
    names
      .of(id)
      .then((found) => current && setName(found))
      .catch(() => undefined);
    return () => {
      current = false;
    };
  }, [names, id, listed]);
  return name ?? id ?? "";
}

export interface CardProps {
  alert: Alert;
  api: Api;
  me: Me | null;
  person: string;
  names: Names;
  units: ReadonlyMap<string, string>;
  t: Strings;
  s: InboxStrings;
  language: Language;
  busy: boolean;
  onAcknowledge: () => void;
  /** The alert changed here (a comment added): show it before the stream says so. */
  onChanged: (alert: Alert) => void;
  onError: (error: unknown) => void;
}

type Panel = "" | "comment" | "silence";

export function AlertCard(props: CardProps) {
  const { alert, t, s, language, person, names, units, busy, onAcknowledge } = props;
  const [panel, setPanel] = useState<Panel>("");
  const canAck = alert.state === "firing" && !alert.acked_by;
  const people = [...alert.recipients, { id: alert.subject.id, name: alert.subject.name ?? "", role: "subject" }];
  const ackedBy = useName(names, alert.acked_by, people);
  const subject = alert.subject.name || alert.subject.id;
  const unit = alert.org_units?.[0] ? units.get(alert.org_units[0]) : undefined;
  const toggle = (which: Panel) => setPanel(panel === which ? "" : which);

  return (
    <li
      class={`alert ${alert.severity} ${alert.state}`}
      data-testid="alert"
      data-alert-id={alert.id}
      data-subject={alert.subject.id}
      data-state={alert.state}
      data-kind={alert.kind}
      data-rule={alert.rule_id}
      data-acked-by={alert.acked_by ?? ""}
    >
      <div class="alert-head">
        <span class={`badge ${alert.severity}`}>{t.severity[alert.severity] ?? alert.severity}</span>
        <span class={`badge state ${alert.state}`}>{t.state[alert.state] ?? alert.state}</span>
        {alert.kind && <span class="badge kind">{s.kind[alert.kind] ?? alert.kind}</span>}
        <span class="rule">{alert.rule_name}</span>
      </div>
      <p class="message">{alert.message}</p>
      <p class="meta">
        <span data-testid="subject-name">{t.about(subject)}</span>
        {unit ? ` · ${s.in(unit)}` : ""} · {t.firedAt(when(alert.fired_at, language))}
        {alert.resolved_at ? ` · ${t.resolvedAt(when(alert.resolved_at, language))}` : ""}
      </p>
      {alert.history.length > 0 && !alert.impact && (
        <HistoryChart alert={alert} api={props.api} s={s} language={language} />
      )}
      {alert.impact && <ImpactList alert={alert} s={s} names={names} />}
      {alert.acked_by && alert.acked_at ? (
        <p class="acked" data-testid="acked">
          {t.ackedBy(alert.acked_by === person ? t.you : ackedBy, when(alert.acked_at, language))}
        </p>
      ) : null}
      <Told alert={alert} api={props.api} person={person} s={s} onError={props.onError} />
      <Comments comments={alert.comments ?? []} s={s} language={language} person={person} t={t} />
      <div class="actions">
        {canAck && (
          <button type="button" data-testid="ack" disabled={busy} onClick={onAcknowledge}>
            {busy ? t.acknowledging : t.acknowledge}
          </button>
        )}
        <button
          type="button"
          class="secondary"
          data-testid="comment"
          aria-expanded={panel === "comment"}
          onClick={() => toggle("comment")}
        >
          {s.comment}
        </button>
        <button
          type="button"
          class="secondary"
          data-testid="silence"
          aria-expanded={panel === "silence"}
          onClick={() => toggle("silence")}
        >
          {s.silence}
        </button>
      </div>
      {panel === "comment" && <CommentForm {...props} onDone={() => setPanel("")} />}
      {panel === "silence" && <SilenceForm {...props} onDone={() => undefined} />}
    </li>
  );
}

/**
 * The metric's history around the alert (ingestion's record of the subject's values), the
 * alert's own observations marked; only those when ingestion does not answer.
 */
function HistoryChart({
  alert,
  api,
  s,
  language,
}: {
  alert: Alert;
  api: Api;
  s: InboxStrings;
  language: Language;
}) {
  const [points, setPoints] = useState<Observation[] | null>(null);
  useEffect(() => {
    let current = true;
    metricHistory(api, alert)
      .then((found) => current && setPoints(found))
      .catch(() => current && setPoints(null));
    return () => {
      current = false;
    };
    // Read again when the alert changes (a resolution adds its value).
  }, [api, alert.id, alert.updated_at]);
  const longer = points !== null && points.length > 0;
  return (
    <MetricChart
      points={longer ? points : alert.history}
      marked={new Set(alert.history.map((point) => point.event_id))}
      source={longer ? "metric" : "alert"}
      label={s.history((alert.metric ?? "").replaceAll("_", " "))}
      language={language}
      colour={COLOURS[alert.severity] ?? COLOURS["info"]!}
    />
  );
}

function ImpactList({ alert, s, names }: { alert: Alert; s: InboxStrings; names: Names }) {
  const impact = alert.impact!;
  return (
    <section class="impact" data-testid="impact" data-failing-goal={impact.failing_goal.goal_id}>
      <h3>{s.impact(impact.failing_goal.title)}</h3>
      <ul>
        {impact.affected.map((goal) => (
          <ImpactGoal key={goal.goal_id} goal={goal} s={s} names={names} />
        ))}
      </ul>
      <p class="quiet">
        {s.impactMore(impact.affected.length, impact.affected_total, impact.owners_total)}
      </p>
    </section>
  );
}

function ImpactGoal({
  goal,
  s,
  names,
}: {
  goal: NonNullable<Alert["impact"]>["affected"][number];
  s: InboxStrings;
  names: Names;
}) {
  const owner = useName(names, goal.owner_name ? null : goal.owner_id, []);
  const ownerName = goal.owner_name || owner;
  return (
    <li data-testid="impact-goal" data-goal-id={goal.goal_id}>
      <span class="goal-title">{goal.title || goal.goal_id}</span>
      {ownerName && <span class="quiet"> · {s.owner(ownerName)}</span>}
      <span class="quiet"> · {s.impactStep(goal.depth, goal.weight)}</span>
    </li>
  );
}

/** Who else the alert was addressed to, and on request the delivery log's record of it. */
function Told({
  alert,
  api,
  person,
  s,
  onError,
}: {
  alert: Alert;
  api: Api;
  person: string;
  s: InboxStrings;
  onError: (error: unknown) => void;
}) {
  const [detail, setDetail] = useState<AlertDetail | null>(null);
  const [open, setOpen] = useState(false);
  const others = alert.recipients.filter((recipient) => recipient.id !== person);
  const label = (recipient: Recipient) =>
    `${recipient.name || recipient.id} (${s.role[recipient.role] ?? recipient.role})`;

  useEffect(() => {
    if (!open) {
      return;
    }
    let current = true;
    alertDetail(api, alert.id)
      .then((found) => current && setDetail(found))
      .catch((error: unknown) => current && onError(error));
    return () => {
      current = false;
    };
    // Read again when the alert changes (a new transition, new deliveries).
  }, [open, api, alert.id, alert.updated_at, onError]);

  return (
    <div class="told">
      <p class="quiet" data-testid="told">
        {others.length > 0 ? s.toldOthers(others.map(label).join(", ")) : s.toldNobodyElse}{" "}
        <button
          type="button"
          class="link"
          data-testid="deliveries-toggle"
          aria-expanded={open}
          onClick={() => setOpen(!open)}
        >
          {open ? s.hideDeliveries : s.deliveries}
        </button>
      </p>
      {open && detail !== null && (
        <ul class="deliveries" data-testid="deliveries">
          {detail.deliveries.length === 0 && <li class="quiet">{s.noDeliveries}</li>}
          {detail.deliveries.map((delivery: Delivery) => (
            <li
              key={delivery.id}
              data-testid="delivery"
              data-channel={delivery.channel}
              data-status={delivery.status}
              data-recipients={delivery.recipients.map((r) => r.id).join(" ")}
            >
              <span class="channel">{channelName(delivery, s)}</span>{" "}
              {delivery.recipients.map((r) => r.name || r.id).join(", ")}{" "}
              <span class={`status ${delivery.status}`}>
                {s.deliveryStatus[delivery.status] ?? delivery.status}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** A delivery's channel by name, and the routing receiver that sent it unless the default. */
function channelName(delivery: Delivery, s: InboxStrings): string {
  const channel = s.channel[delivery.channel] ?? delivery.channel;
  const receiver = delivery.receiver;
  return receiver && receiver !== "default" ? `${channel} (${receiver})` : channel;
}

function Comments({
  comments,
  s,
  t,
  language,
  person,
}: {
  comments: Comment[];
  s: InboxStrings;
  t: Strings;
  language: Language;
  person: string;
}) {
  if (comments.length === 0) {
    return null;
  }
  return (
    <section class="comments" aria-label={s.comments}>
      <ul data-testid="comments">
        {comments.map((comment) => (
          <li key={comment.id} data-testid="comment-item" data-by={comment.by}>
            <span class="comment-by">{comment.by === person ? t.you : comment.name || comment.by}</span>
            <span class="quiet"> · {when(comment.at, language)}</span>
            <p>{comment.text}</p>
          </li>
        ))}
      </ul>
    </section>
  );
}

function CommentForm({ alert, api, s, onChanged, onError, onDone }: CardProps & { onDone: () => void }) {
  const [text, setText] = useState("");
  const [sending, setSending] = useState(false);
  const submit = (event: Event) => {
    event.preventDefault();
    if (!text.trim()) {
      return;
    }
    setSending(true);
    addComment(api, alert.id, text.trim())
      .then((comment) => {
        const known = alert.comments ?? [];
        if (!known.some((c) => c.id === comment.id)) {
          onChanged({ ...alert, comments: [...known, comment] });
        }
        setText("");
        onDone();
      })
      .catch(onError)
      .finally(() => setSending(false));
  };
  return (
    <form class="panel" onSubmit={submit}>
      <textarea
        data-testid="comment-text"
        aria-label={s.comment}
        placeholder={s.commentPlaceholder}
        maxLength={2000}
        rows={2}
        value={text}
        onInput={(event) => setText(event.currentTarget.value)}
      />
      <div class="actions">
        <button type="submit" data-testid="comment-send" disabled={sending || !text.trim()}>
          {sending ? s.sending : s.send}
        </button>
        <button type="button" class="secondary" onClick={onDone}>
          {s.cancel}
        </button>
      </div>
    </form>
  );
}

function SilenceForm({ alert, api, me, s, language, onError }: CardProps & { onDone: () => void }) {
  const [hours, setHours] = useState(24);
  const [why, setWhy] = useState("");
  const [sending, setSending] = useState(false);
  const [until, setUntil] = useState<string | null>(null);
  if (!holds(me, "hr_admin")) {
    return (
      <p class="panel quiet" data-testid="silence-not-allowed">
        {s.silenceNotAllowed}
      </p>
    );
  }
  if (until !== null) {
    return (
      <p class="panel acked" data-testid="silenced">
        {s.silenced(when(until, language))}
      </p>
    );
  }
  const submit = (event: Event) => {
    event.preventDefault();
    setSending(true);
    silenceAlert(api, alert, hours, why.trim())
      .then((silence) => setUntil(silence.ends_at))
      .catch(onError)
      .finally(() => setSending(false));
  };
  return (
    <form class="panel" onSubmit={submit}>
      <label>
        {s.silenceFor}
        <select
          data-testid="silence-hours"
          value={String(hours)}
          onChange={(event) => setHours(Number(event.currentTarget.value))}
        >
          {[1, 8, 24, 168].map((h) => (
            <option key={h} value={String(h)}>
              {s.silenceHours[h]}
            </option>
          ))}
        </select>
      </label>
      <label>
        {s.silenceWhy}
        <input
          data-testid="silence-why"
          required
          maxLength={1000}
          placeholder={s.silenceWhyPlaceholder}
          value={why}
          onInput={(event) => setWhy(event.currentTarget.value)}
        />
      </label>
      <div class="actions">
        <button type="submit" data-testid="silence-send" disabled={sending || !why.trim()}>
          {s.silenceNow}
        </button>
      </div>
    </form>
  );
}
