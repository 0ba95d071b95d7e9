/**
 * The operations page (operator): each service's consumer backlog, refreshed every few
 * seconds; dead letters with their reason and a Replay button (asked twice); failed
 * deliveries of the last day by channel (a bar chart) and the latest of them.
 */
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import { type Service, SignedOut } from "./api";
import type { Language } from "./i18n";
import type { Bars } from "./operations-chart";
import {
  byChannel,
  CONSUMING,
  consumersOf,
  type DeadLetter,
  deadLetters,
  type Delivery,
  FAILURE_WINDOW_HOURS,
  failures,
  lagRows,
  replay,
  type ServiceConsumers,
} from "./operations-api";
import { type OperationsStrings, operationsStrings } from "./operations-strings";
import type { PageProps } from "./page";
import "./operations.css";

const CONSUMERS_EVERY_MS = 5000;
const OTHERS_EVERY_MS = 15000;
const LATEST_FAILURES = 10;

function when(iso: string, language: Language): string {
  return new Intl.DateTimeFormat(language === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "medium",
  }).format(new Date(iso));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Run ``load`` now and every ``ms`` while the page is shown. */
function useEvery(load: () => void, ms: number): void {
  useEffect(() => {
    load();
    const timer = window.setInterval(load, ms);
    return () => window.clearInterval(timer);
  }, [load, ms]);
}

type Answer = { ok: true; found: ServiceConsumers } | { ok: false; problem: string };

export function Operations({ api, t, language, onSignedOut }: PageProps) {
  const s = operationsStrings(language);
  const [consumers, setConsumers] = useState<Map<Service, Answer> | null>(null);
  const [letters, setLetters] = useState<DeadLetter[] | null>(null);
  const [failed, setFailed] = useState<Delivery[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  const fail = useCallback(
    (error: unknown) => {
      if (error instanceof SignedOut) {
        onSignedOut();
      } else {
        setProblem(message(error));
      }
    },
    [onSignedOut],
  );

  const loadConsumers = useCallback(() => {
    Promise.allSettled(CONSUMING.map((service) => consumersOf(api, service))).then((results) => {
      const answers = new Map<Service, Answer>();
      results.forEach((result, index) => {
        const service = CONSUMING[index] as Service;
        if (result.status === "fulfilled") {
          answers.set(service, { ok: true, found: result.value });
        } else if (result.reason instanceof SignedOut) {
          onSignedOut();
        } else {
          answers.set(service, { ok: false, problem: message(result.reason) });
        }
      });
      setConsumers(answers);
    });
  }, [api, onSignedOut]);

  const loadOthers = useCallback(() => {
    deadLetters(api)
      .then((page) => setLetters(page.dead_letters))
      .catch(fail);
    failures(api).then(setFailed).catch(fail);
  }, [api, fail]);

  useEvery(loadConsumers, CONSUMERS_EVERY_MS);
  useEvery(loadOthers, OTHERS_EVERY_MS);

  const replayed = (updated: DeadLetter) =>
    setLetters((known) =>
      (known ?? []).map((one) => (one.sequence === updated.sequence ? updated : one)),
    );

  return (
    <section class="page operations" data-testid="operations-page" aria-labelledby="ops-title">
      <div class="ops-head">
        <h1 id="ops-title">{t.operations}</h1>
        <button
          type="button"
          class="secondary"
          data-testid="refresh"
          onClick={() => {
            loadConsumers();
            loadOthers();
          }}
        >
          {s.refresh}
        </button>
      </div>
      <p class="quiet">{s.intro}</p>
      {problem !== null && (
        <p class="problem" role="alert">
          {t.failed(problem)}
        </p>
      )}
      <Consumers answers={consumers} s={s} loading={t.loading} />
      <DeadLetters
        letters={letters}
        s={s}
        loading={t.loading}
        language={language}
        onReplay={(letter) => replay(api, letter)}
        onReplayed={replayed}
        onError={fail}
      />
      <Failures found={failed} s={s} loading={t.loading} language={language} />
    </section>
  );
}

function Consumers({
  answers,
  s,
  loading,
}: {
  answers: Map<Service, Answer> | null;
  s: OperationsStrings;
  loading: string;
}) {
  const every = [...(answers?.values() ?? [])].find((a) => a.ok);
  return (
    <section class="ops-section" aria-labelledby="ops-consumers">
      <h2 id="ops-consumers">{s.consumers}</h2>
      {every?.ok && <p class="quiet">{s.consumersHint(every.found.every_seconds)}</p>}
      {answers === null ? (
        <p class="quiet">{loading}</p>
      ) : (
        <div class="table-wrap">
          <table class="ops-table" data-testid="consumers">
            <thead>
              <tr>
                <th>{s.service}</th>
                <th>{s.stream}</th>
                <th>{s.consumer}</th>
                <th class="num">{s.pending}</th>
                <th class="num">{s.inFlight}</th>
                <th class="num">{s.redelivered}</th>
                <th class="num">{s.readAgo}</th>
              </tr>
            </thead>
            <tbody>
              {[...answers.entries()].flatMap(([service, answer]) =>
                !answer.ok ? (
                  <tr key={service}>
                    <td>{service}</td>
                    <td colSpan={6} class="problem" data-testid="consumers-down">
                      {s.serviceDown(service, answer.problem)}
                    </td>
                  </tr>
                ) : answer.found.consumers.length === 0 ? (
                  <tr key={service}>
                    <td>{service}</td>
                    <td colSpan={6} class="quiet">
                      {s.noConsumers}
                    </td>
                  </tr>
                ) : (
                  lagRows(answer.found.consumers).map((c) => (
                    <tr
                      key={`${service}/${c.stream}/${c.consumer}`}
                      data-testid="consumer"
                      data-service={service}
                      data-consumer={c.consumer}
                      class={c.pending > 0 ? "behind" : undefined}
                    >
                      <td>{service}</td>
                      <td class="code">{c.stream}</td>
                      <td class="code">
                        {c.consumer}
                        {c.partitions > 0 && (
                          <span class="parts">
                            {" "}
                            {s.partitions(c.partitions)}
                            {c.behind.length > 0 && ` · ${s.behind(c.behind.join(", "))}`}
                          </span>
                        )}
                      </td>
                      <td class="num" data-testid="pending">
                        {c.pending}
                      </td>
                      <td class="num">{c.ack_pending}</td>
                      <td class="num">{c.redelivered}</td>
                      <td class="num">{s.secondsAgo(c.age_seconds)}</td>
                    </tr>
                  ))
                ),
              )}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function DeadLetters({
  letters,
  s,
  loading,
  language,
  onReplay,
  onReplayed,
  onError,
}: {
  letters: DeadLetter[] | null;
  s: OperationsStrings;
  loading: string;
  language: Language;
  onReplay: (letter: DeadLetter) => Promise<DeadLetter>;
  onReplayed: (letter: DeadLetter) => void;
  onError: (error: unknown) => void;
}) {
  return (
    <section class="ops-section" aria-labelledby="ops-dead-letters">
      <h2 id="ops-dead-letters">{s.deadLetters}</h2>
      <p class="quiet">{s.deadLettersHint}</p>
      {letters === null ? (
        <p class="quiet">{loading}</p>
      ) : letters.length === 0 ? (
        <p class="quiet" data-testid="no-dead-letters">
          {s.noDeadLetters}
        </p>
      ) : (
        <ul class="letters" data-testid="dead-letters">
          {letters.map((letter) => (
            <Letter
              key={letter.sequence}
              letter={letter}
              s={s}
              language={language}
              onReplay={onReplay}
              onReplayed={onReplayed}
              onError={onError}
            />
          ))}
        </ul>
      )}
    </section>
  );
}

function Letter({
  letter,
  s,
  language,
  onReplay,
  onReplayed,
  onError,
}: {
  letter: DeadLetter;
  s: OperationsStrings;
  language: Language;
  onReplay: (letter: DeadLetter) => Promise<DeadLetter>;
  onReplayed: (letter: DeadLetter) => void;
  onError: (error: unknown) => void;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const go = () => {
    setBusy(true);
    onReplay(letter)
      .then(onReplayed)
      .catch(onError)
      .finally(() => {
        setBusy(false);
        setAsking(false);
      });
  };
  return (
    <li class="letter" data-testid="dead-letter" data-sequence={letter.sequence}>
      <p class="reason" data-testid="reason">
        {letter.reason}
      </p>
      <dl class="facts">
        <dt>{s.origin}</dt>
        <dd class="code" data-testid="origin">
          {letter.origin_subject}
        </dd>
        <dt>{s.at}</dt>
        <dd>{when(letter.at, language)}</dd>
      </dl>
      {letter.errors.length > 0 && (
        <ul class="errors">
          {letter.errors.slice(0, 5).map((error, index) => (
            <li key={index}>
              <span class="code">{error.loc}</span> {error.msg}
            </li>
          ))}
        </ul>
      )}
      <details>
        <summary>
          {s.payload(letter.payload_bytes ?? new TextEncoder().encode(letter.payload).length)}
          {(letter.payload_truncated || letter.payload_shortened) && ` — ${s.truncated}`}
        </summary>
        <pre>{letter.payload}</pre>
      </details>
      {letter.replayed !== null ? (
        <p class="replayed" data-testid="replayed">
          {s.replayed(
            when(letter.replayed.at, language),
            letter.replayed.by.replace(/^person:/, ""),
            letter.replayed.stream,
            letter.replayed.sequence,
          )}
        </p>
      ) : !letter.replayable ? (
        <p class="quiet" data-testid="operator-only">
          {s.operatorOnly}
        </p>
      ) : asking ? (
        <div class="confirm" role="group" data-testid="replay-ask">
          <span>{s.replayAsk(letter.origin_subject, letter.replayed_by ?? "goals")}</span>
          <div class="actions">
            <button type="button" data-testid="replay-confirm" disabled={busy} onClick={go}>
              {busy ? s.replaying : s.replayConfirm}
            </button>
            <button
              type="button"
              class="secondary"
              data-testid="replay-cancel"
              disabled={busy}
              onClick={() => setAsking(false)}
            >
              {s.cancel}
            </button>
          </div>
        </div>
      ) : (
        <div class="actions">
          <button type="button" data-testid="replay" onClick={() => setAsking(true)}>
            {s.replay}
          </button>
        </div>
      )}
    </li>
  );
}

function Failures({
  found,
  s,
  loading,
  language,
}: {
  found: Delivery[] | null;
  s: OperationsStrings;
  loading: string;
  language: Language;
}) {
  const counts = found === null ? [] : byChannel(found);
  return (
    <section class="ops-section" aria-labelledby="ops-failures">
      <h2 id="ops-failures">{s.failures}</h2>
      <p class="quiet">{s.failuresHint(FAILURE_WINDOW_HOURS)}</p>
      {found === null ? (
        <p class="quiet">{loading}</p>
      ) : found.length === 0 ? (
        <p class="quiet" data-testid="no-failures">
          {s.noFailures}
        </p>
      ) : (
        <>
          <div class="chart-box">
            <FailureChart counts={counts} label={s.count} />
          </div>
          <table class="ops-table counts" data-testid="failures-by-channel">
            <thead>
              <tr>
                <th>{s.channel}</th>
                <th class="num">{s.count}</th>
              </tr>
            </thead>
            <tbody>
              {counts.map(([channel, count]) => (
                <tr key={channel} data-testid="failure-count" data-channel={channel}>
                  <td class="code">{channel}</td>
                  <td class="num">{count}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h3>{s.latestFailures}</h3>
          <ul class="failures" data-testid="failures">
            {found.slice(0, LATEST_FAILURES).map((delivery) => (
              <li key={delivery.id} data-testid="failure" data-channel={delivery.channel}>
                <div class="failure-head">
                  <span class="badge critical">{delivery.channel}</span>
                  {delivery.receiver && <span class="code">{delivery.receiver}</span>}
                  <span class="quiet">{when(delivery.at, language)}</span>
                </div>
                <p class="error">{delivery.error ?? "—"}</p>
                <p class="quiet">
                  {s.rule} <span class="code">{delivery.rule_id}</span> ·{" "}
                  {s.attempts(delivery.attempts)}
                </p>
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

/** Failures by channel as bars; Chart.js is loaded with the first chart, and the chart's
 * data replaced on each refresh. */
function FailureChart({ counts, label }: { counts: [string, number][]; label: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [bars, setBars] = useState<Bars | null>(null);

  useEffect(() => {
    let made: Bars | null = null;
    let gone = false;
    void import("./operations-chart").then(({ barChart }) => {
      if (!gone && canvas.current !== null) {
        made = barChart(canvas.current, label, "#b3261e");
        setBars(made);
      }
    });
    return () => {
      gone = true;
      made?.destroy();
    };
  }, [label]);

  useEffect(() => {
    bars?.show(counts);
  }, [bars, counts]);

  return (
    <canvas
      ref={canvas}
      data-testid="failures-chart"
      data-drawn={bars === null ? "no" : "yes"}
      role="img"
      aria-label={label}
    />
  );
}
