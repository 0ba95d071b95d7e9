/**
 * The rules page (HR): the rule list with what each fired over the last 30 days (``/rules``),
 * and the editor of one rule (``/rules/<id>``, a new one at ``/rules/new``): live lint under
 * the lines, tests, a backtest with its per-day chart, publishing with a comment, and the
 * versions with their diffs and rollback. Every call is the evaluator's rules API, except the
 * 30-day counts, read from the notifier's inbox.
 */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  LinearScale,
  Tooltip,
} from "chart.js";
import type { EditorView } from "@codemirror/view";
import { diffLines } from "diff";
import { useLocation } from "preact-iso";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";

import { ApiError, SignedOut } from "./api";
import type { Language } from "./i18n";
import type { PageProps } from "./page";
import { createEditor, replaceText, showProblems } from "./rules-editor";
import {
  type Backtest,
  type Fired,
  type LintProblem,
  type Rule,
  RulesApi,
  type ShippedTest,
  type RuleVersion,
  type TestResult,
} from "./rules-api";
import { type RulesStrings, rulesStrings } from "./rules-strings";
import "./rules.css";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);

const NEW = "new";
const LINT_DELAY_MS = 400;
const DAY_MS = 86_400_000;
const FIRED_WINDOW_DAYS = 30;
/** Requests for the list's 30-day counts at once. */
const FIRED_REQUESTS = 4;

const NEW_RULE = `id: my-new-rule
name: What the rule watches, in a few words
kind: threshold
metric: report_rework_rate
condition: {op: ">", value: 0.1}
severity: info
notify: [subject]
message: "{subject_name}: {value:.0%}"
`;

function when(iso: string, language: Language): string {
  return new Intl.DateTimeFormat(language === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
  }).format(new Date(iso));
}

/** The id a draft declares (its ``id:`` line), or null. */
function idOf(text: string): string | null {
  const match = /^id:\s*["']?([a-z0-9][a-z0-9-]*)["']?\s*(#.*)?$/m.exec(text);
  return match?.[1] ?? null;
}

/** The metric a draft declares (its ``metric:`` line), or null. */
function metricOf(text: string): string | null {
  const match = /^metric:\s*["']?([A-Za-z0-9_.-]+)["']?\s*(#.*)?$/m.exec(text);
  return match?.[1] ?? null;
}

/** A starting test case for ``rule``: one event above the line fires, for the person to edit. */
function testTemplate(id: string, metric: string | null): string {
  const time = "2026-11-02T18:00:00Z";
  return `name: a value above the line fires
events:
  - {id: t-1, metric: ${metric ?? "report_rework_rate"}, value: 0.2, time: "${time}", subject: someone, source: his}
expect:
  - {state: firing, rule: ${id}, subject: someone, at: "${time}"}
`;
}

/** The cases of a test text: YAML documents separated by lines of ``---``. */
function cases(text: string): string[] {
  return text.split(/^---\s*$/m).filter((part) => part.trim() !== "");
}

/** Every UTC day from the first to the last of ``perDay`` (and of the window), with counts. */
function daysOf(perDay: Record<string, number>, since: string): [string, number][] {
  const keys = Object.keys(perDay).sort();
  const start = Math.min(Date.parse(since.slice(0, 10)), Date.parse(keys[0] ?? "9999-12-31"));
  const today = new Date().toISOString().slice(0, 10);
  const end = Math.max(Date.parse(today), Date.parse(keys[keys.length - 1] ?? "0000-01-01"));
  if ((end - start) / DAY_MS > 400) {
    return keys.map((day) => [day, perDay[day] ?? 0]);
  }
  const days: [string, number][] = [];
  for (let at = start; at <= end; at += DAY_MS) {
    const day = new Date(at).toISOString().slice(0, 10);
    days.push([day, perDay[day] ?? 0]);
  }
  return days;
}

type Fail = (error: unknown) => void;

function useFail(onSignedOut: () => void, setProblem: (text: string | null) => void): Fail {
  return useCallback(
    (error: unknown) => {
      if (error instanceof SignedOut) {
        onSignedOut();
      } else {
        setProblem(
          error instanceof ApiError ? error.detail : error instanceof Error ? error.message : String(error),
        );
      }
    },
    [onSignedOut, setProblem],
  );
}

/** The page: the list, or one rule's editor. */
export function Rules(props: PageProps & { id?: string }) {
  const s = rulesStrings(props.language);
  const rules = useMemo(() => new RulesApi(props.api), [props.api]);
  const id = props.id?.replace(/\/+$/, "") ?? "";
  return (
    <section class="page rules" data-testid="rules-page">
      {id === "" ? (
        <RuleList {...props} s={s} rules={rules} />
      ) : (
        <RuleEditor key={id} {...props} id={id} s={s} rules={rules} />
      )}
    </section>
  );
}

interface Inner extends PageProps {
  s: RulesStrings;
  rules: RulesApi;
}

function RuleList({ t, s, rules, language, onSignedOut }: Inner) {
  const [list, setList] = useState<Rule[] | null>(null);
  const [fired, setFired] = useState<Record<string, Fired>>({});
  const [problem, setProblem] = useState<string | null>(null);
  const fail = useFail(onSignedOut, setProblem);

  useEffect(() => {
    let gone = false;
    rules
      .list()
      .then(async (found) => {
        if (gone) return;
        setList(found);
        const since = new Date(Date.now() - FIRED_WINDOW_DAYS * DAY_MS);
        // A few rules at a time: a long list of rules should not open a request per rule
        // at once.
        const waiting = [...found];
        const worker = async () => {
          for (let rule = waiting.shift(); rule !== undefined && !gone; rule = waiting.shift()) {
            const id = rule.id;
            const count = await rules.fired(id, since);
            if (!gone) setFired((known) => ({ ...known, [id]: count }));
          }
        };
        await Promise.all(Array.from({ length: FIRED_REQUESTS }, worker));
      })
      .catch(fail);
    return () => {
      gone = true;
    };
  }, [rules, fail]);

  return (
    <>
      <div class="rules-head">
        <h1>{t.rules}</h1>
        <a class="button" href={`/rules/${NEW}`} data-testid="new-rule">
          {s.newRule}
        </a>
      </div>
      {problem !== null && (
        <p class="problem" role="alert">
          {t.failed(problem)}
        </p>
      )}
      {list === null ? (
        <p class="muted">{t.loading}</p>
      ) : list.length === 0 ? (
        <p class="muted">{s.noRules}</p>
      ) : (
        <ul class="rule-list">
          {list.map((rule) => {
            const count = fired[rule.id];
            return (
              <li key={rule.id} class="rule-row" data-testid="rule-row" data-rule-id={rule.id}>
                <div class="rule-title">
                  <a href={`/rules/${encodeURIComponent(rule.id)}`} class="rule-name">
                    {rule.name}
                  </a>
                  <code class="rule-id">{rule.id}</code>
                </div>
                <div class="rule-facts">
                  <span class={`badge ${rule.severity}`}>{s.severities[rule.severity]}</span>
                  <span class="fact">{s.kinds[rule.kind] ?? rule.kind}</span>
                  <span class={`fact switch ${rule.enabled ? "on" : "off"}`}>
                    {rule.enabled ? s.on : s.off}
                  </span>
                  {rule.version !== null && <span class="fact">v{rule.version}</span>}
                  <span
                    class="fact fired"
                    data-testid="fired"
                    data-count={count === undefined ? "" : String(count.count)}
                    title={s.fired30}
                  >
                    {s.fired30}:{" "}
                    <strong>
                      {count === undefined ? "…" : `${count.count}${count.more ? "+" : ""}`}
                    </strong>
                  </span>
                </div>
                {rule.changed_at !== null && (
                  <div class="meta">
                    {s.changed}: {s.changedBy(rule.changed_by ?? "", when(rule.changed_at, language))}
                    {rule.comment ? ` — ${rule.comment}` : ""}
                  </div>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </>
  );
}

/** CodeMirror in a Preact component: ``text`` is read once; ``replacement`` replaces it. */
function CodeEditor({
  initial,
  replacement,
  label,
  problems,
  fixLabel,
  onChange,
}: {
  initial: string;
  replacement: { text: string; n: number };
  label: string;
  problems: LintProblem[];
  fixLabel: string;
  onChange: (text: string) => void;
}) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const change = useRef(onChange);
  change.current = onChange;

  useEffect(() => {
    if (host.current === null) return;
    const made = createEditor(host.current, initial, label, (text) => change.current(text));
    view.current = made;
    return () => {
      made.destroy();
      view.current = null;
    };
    // The editor is made once; later text comes through ``replacement``.
  }, []);

  useEffect(() => {
    if (view.current !== null && replacement.n > 0) {
      replaceText(view.current, replacement.text);
    }
  }, [replacement]);

  useEffect(() => {
    if (view.current !== null) {
      showProblems(view.current, problems, fixLabel);
    }
  }, [problems, fixLabel]);

  return <div class="code" ref={host} />;
}

function DayChart({ days, label }: { days: [string, number][]; label: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (canvas.current === null) return;
    const chart = new Chart(canvas.current, {
      type: "bar",
      data: {
        labels: days.map(([day]) => day.slice(5)),
        datasets: [{ label, data: days.map(([, count]) => count), backgroundColor: "#b26b00" }],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
    return () => chart.destroy();
  }, [days, label]);
  return (
    <div class="chart">
      <canvas ref={canvas} role="img" aria-label={label} data-testid="backtest-chart" />
    </div>
  );
}

/** What the latest check found, and of which text. */
type Checked = { text: string | null; problems: LintProblem[] };
/** The lint of the text as it stands: ``checking`` until the check of this very text is in. */
type Lint = { checking: boolean; problems: LintProblem[] };

function RuleEditor({ id, t, s, rules, language, onSignedOut }: Inner & { id: string }) {
  const isNew = id === NEW;
  const { route } = useLocation();
  const [rule, setRule] = useState<Rule | null>(null);
  const [loaded, setLoaded] = useState(isNew);
  const [text, setText] = useState(isNew ? NEW_RULE : "");
  const [replacement, setReplacement] = useState({ text: "", n: 0 });
  const [checked, setChecked] = useState<Checked>({ text: null, problems: [] });
  // Derived, not set by the check's effect: publishing is off from the first render of a
  // changed text, not from a moment later.
  const lint: Lint = { checking: checked.text !== text, problems: checked.problems };
  const [problem, setProblem] = useState<string | null>(null);
  const fail = useFail(onSignedOut, setProblem);
  const draftId = isNew ? idOf(text) : id;

  useEffect(() => {
    if (isNew) return;
    rules
      .get(id)
      .then((found) => {
        setRule(found);
        setText(found.source ?? "");
        setLoaded(true);
      })
      .catch(fail);
  }, [rules, id, isNew, fail]);

  // Live lint: the text as it stands, a moment after the person stops typing. An answer
  // to older text than the latest asked is dropped.
  const asked = useRef(0);
  useEffect(() => {
    if (!loaded) return;
    const n = ++asked.current;
    const timer = window.setTimeout(() => {
      rules
        .validate(text, rule?.file ?? "draft.yaml")
        .then((found) => {
          if (n === asked.current) setChecked({ text, problems: found.problems });
        })
        .catch(fail);
    }, LINT_DELAY_MS);
    return () => window.clearTimeout(timer);
  }, [rules, text, loaded, rule, fail]);

  const load = useCallback(
    (found: Rule) => {
      setRule(found);
      const source = found.source ?? "";
      setText(source);
      setReplacement((known) => ({ text: source, n: known.n + 1 }));
    },
    [],
  );

  if (!loaded) {
    return problem === null ? (
      <p class="muted">{t.loading}</p>
    ) : (
      <p class="problem" role="alert">
        {t.failed(problem)}
      </p>
    );
  }

  const unplaced = lint.problems.filter((found) => found.line === null);
  return (
    <>
      <p>
        <a href="/rules" data-testid="back">
          ← {s.allRules}
        </a>
      </p>
      <div class="rules-head">
        <h1 data-testid="rule-title">{rule?.name ?? s.newRule}</h1>
        {rule !== null && (
          // On or off changes no text: what the person is editing stays.
          <Switch rule={rule} s={s} rules={rules} onChanged={setRule} fail={fail} />
        )}
      </div>
      {rule?.version != null && (
        <p class="meta">
          <code>{rule.id}</code> · v{rule.version}
          {text !== (rule.source ?? "") && <span data-testid="unsaved"> · {s.unsaved}</span>}
        </p>
      )}
      {problem !== null && (
        <p class="problem" role="alert" data-testid="problem">
          {t.failed(problem)}
        </p>
      )}
      <div class="editor">
        <div
          class="lint-status"
          data-testid="lint-status"
          data-state={lint.checking ? "checking" : lint.problems.length ? "problems" : "ok"}
        >
          {lint.checking
            ? s.checking
            : lint.problems.length === 0
              ? s.noProblems
              : s.problems(lint.problems.length)}
        </div>
        {unplaced.map((found) => (
          <div class="lint-problem" role="alert" data-testid="lint-problem" key={found.text}>
            {found.message}
          </div>
        ))}
        <CodeEditor
          initial={text}
          replacement={replacement}
          label={s.editorLabel}
          problems={lint.problems}
          fixLabel={s.fix}
          onChange={setText}
        />
      </div>
      <TestPane s={s} t={t} rules={rules} id={draftId} rule={rule} text={text} fail={fail} />
      <BacktestPane s={s} t={t} rules={rules} id={draftId} text={text} fail={fail} />
      <PublishPane
        s={s}
        rules={rules}
        rule={rule}
        text={text}
        lint={lint}
        fail={fail}
        onPublished={(found) => {
          if (isNew) {
            route(`/rules/${encodeURIComponent(found.id)}`);
          } else {
            load(found);
          }
        }}
      />
      {rule !== null && (
        <History s={s} rules={rules} rule={rule} language={language} fail={fail} onRolledBack={load} />
      )}
    </>
  );
}

function Switch({
  rule,
  s,
  rules,
  onChanged,
  fail,
}: {
  rule: Rule;
  s: RulesStrings;
  rules: RulesApi;
  onChanged: (rule: Rule) => void;
  fail: Fail;
}) {
  const [busy, setBusy] = useState(false);
  return (
    <span class="switch-box">
      <span class={`fact switch ${rule.enabled ? "on" : "off"}`} data-testid="rule-enabled" data-on={String(rule.enabled)}>
        {rule.enabled ? s.on : s.off}
      </span>
      <button
        type="button"
        class="secondary"
        disabled={busy}
        data-testid="toggle-rule"
        onClick={() => {
          setBusy(true);
          rules
            .setEnabled(rule.id, !rule.enabled, "")
            .then(onChanged)
            .catch(fail)
            .finally(() => setBusy(false));
        }}
      >
        {rule.enabled ? s.disable : s.enable}
      </button>
    </span>
  );
}

function TestPane({
  s,
  t,
  rules,
  id,
  rule,
  text,
  fail,
}: {
  s: RulesStrings;
  t: PageProps["t"];
  rules: RulesApi;
  id: string | null;
  rule: Rule | null;
  text: string;
  fail: Fail;
}) {
  // The rule's own tests shipped beside the rules, when it has some; otherwise a starting
  // case that follows the draft's id and metric until the person edits it.
  const [shipped, setShipped] = useState<ShippedTest[]>([]);
  const [edited, setTests] = useState<string | null>(null);
  useEffect(() => {
    setShipped([]);
    if (rule === null) {
      return;
    }
    rules.shipped(rule.id).then(setShipped, () => setShipped([]));
  }, [rules, rule?.id]);
  const tests =
    edited ??
    (shipped.length > 0
      ? shipped.map((one) => one.text.trimEnd()).join("\n---\n")
      : testTemplate(id ?? "my-new-rule", rule?.metric ?? metricOf(text)));
  const [results, setResults] = useState<TestResult[] | null>(null);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);

  const run = async () => {
    if (id === null) {
      setProblem(s.noId);
      return;
    }
    setBusy(true);
    setProblem(null);
    setResults(null);
    const found: TestResult[] = [];
    try {
      for (const one of cases(tests)) {
        found.push(await rules.test(id, one, text));
      }
      setResults(found);
    } catch (error) {
      if (error instanceof ApiError) {
        setProblem(error.detail);
      } else {
        fail(error);
      }
    } finally {
      setBusy(false);
    }
  };

  const passed = results?.filter((result) => result.passed).length ?? 0;
  return (
    <section class="pane" data-testid="test-pane">
      <h2>{s.testTitle}</h2>
      <p class="meta">{s.testHelp}</p>
      {shipped.length > 0 && edited === null && (
        <p class="meta" data-testid="shipped-tests">
          {s.shippedTests(shipped.length, shipped.map((one) => one.file).join(", "))}
        </p>
      )}
      <textarea
        class="tests"
        rows={8}
        spellcheck={false}
        value={tests}
        data-testid="tests"
        aria-label={s.testTitle}
        onInput={(event) => setTests(event.currentTarget.value)}
      />
      <div class="actions">
        <button type="button" disabled={busy} data-testid="run-tests" onClick={() => void run()}>
          {busy ? s.running : s.runTests}
        </button>
      </div>
      {problem !== null && (
        <p class="problem" role="alert" data-testid="tests-problem">
          {t.failed(problem)}
        </p>
      )}
      {results !== null && (
        <div data-testid="test-results" data-passed={String(passed)} data-count={String(results.length)}>
          <p class={passed === results.length ? "ok" : "problem"}>
            {s.testsSummary(passed, results.length)}
          </p>
          <ul class="test-results">
            {results.map((result, index) => (
              <li key={index} data-testid="test-result" data-passed={String(result.passed)}>
                <span class={result.passed ? "ok" : "problem"}>
                  {result.passed ? s.passed(result.name) : s.failedTest(result.name)}
                </span>
                {result.failures.length > 0 && <pre>{result.failures.join("\n")}</pre>}
              </li>
            ))}
          </ul>
        </div>
      )}
    </section>
  );
}

function BacktestPane({
  s,
  t,
  rules,
  id,
  text,
  fail,
}: {
  s: RulesStrings;
  t: PageProps["t"];
  rules: RulesApi;
  id: string | null;
  text: string;
  fail: Fail;
}) {
  const [since, setSince] = useState("30d");
  const [result, setResult] = useState<Backtest | null>(null);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const days = useMemo(
    () => (result === null ? [] : daysOf(result.fired_per_day, result.since)),
    [result],
  );

  const run = () => {
    if (id === null) {
      setProblem(s.noId);
      return;
    }
    setBusy(true);
    setProblem(null);
    rules
      .backtest(id, text, since)
      .then(setResult)
      .catch((error: unknown) =>
        error instanceof ApiError ? setProblem(error.detail) : fail(error),
      )
      .finally(() => setBusy(false));
  };

  return (
    <section class="pane" data-testid="backtest-pane">
      <h2>{s.backtestTitle}</h2>
      <p class="meta">{s.backtestHelp}</p>
      <div class="actions">
        <label class="inline">
          {s.since}{" "}
          <select
            value={since}
            data-testid="backtest-since"
            onChange={(event) => setSince(event.currentTarget.value)}
          >
            {[1, 7, 30].map((n) => (
              <option key={n} value={`${n}d`}>
                {s.days(n)}
              </option>
            ))}
          </select>
        </label>
        <button type="button" disabled={busy} data-testid="run-backtest" onClick={run}>
          {busy ? s.running : s.runBacktest}
        </button>
      </div>
      {problem !== null && (
        <p class="problem" role="alert" data-testid="backtest-problem">
          {t.failed(problem)}
        </p>
      )}
      {result !== null && (
        <div
          data-testid="backtest-result"
          data-events={String(result.events)}
          data-fired={String(result.fired)}
          data-resolved={String(result.resolved)}
        >
          <p data-testid="backtest-summary">
            {s.backtestSummary(result.events, result.fired, result.resolved)}
          </p>
          {result.truncated && <p class="meta">{s.truncated}</p>}
          {result.fired === 0 ? (
            <p class="meta">{s.nothingFired}</p>
          ) : (
            <>
              <DayChart days={days} label={s.firedCount} />
              <table class="per-day">
                <thead>
                  <tr>
                    <th>{s.day}</th>
                    <th>{s.firedCount}</th>
                  </tr>
                </thead>
                <tbody>
                  {Object.entries(result.fired_per_day).map(([day, count]) => (
                    <tr key={day} data-testid="backtest-day" data-day={day} data-count={String(count)}>
                      <td>{day}</td>
                      <td>{count}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
        </div>
      )}
    </section>
  );
}

function PublishPane({
  s,
  rules,
  rule,
  text,
  lint,
  fail,
  onPublished,
}: {
  s: RulesStrings;
  rules: RulesApi;
  rule: Rule | null;
  text: string;
  lint: Lint;
  fail: Fail;
  onPublished: (rule: Rule) => void;
}) {
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  // What the last publish said, and of which version: gone once the rule moves on.
  const [done, setDone] = useState<{ text: string; version: number | null } | null>(null);
  const blocked = lint.checking || lint.problems.length > 0;

  const publish = () => {
    setBusy(true);
    setDone(null);
    const change =
      rule === null
        ? rules.create(text, comment)
        : rules.update(rule.id, text, comment, rule.version);
    change
      .then((found) => {
        setDone({
          text:
            rule !== null && found.version === rule.version
              ? s.unchanged
              : s.published(found.version ?? 0),
          version: found.version,
        });
        setComment("");
        onPublished(found);
      })
      .catch(fail)
      .finally(() => setBusy(false));
  };

  return (
    <section class="pane" data-testid="publish-pane">
      <h2>{s.publishTitle}</h2>
      <label class="field">
        {s.comment}
        <input
          type="text"
          value={comment}
          maxLength={1000}
          data-testid="publish-comment"
          onInput={(event) => setComment(event.currentTarget.value)}
        />
      </label>
      <div class="actions">
        <button type="button" disabled={busy || blocked} data-testid="publish" onClick={publish}>
          {busy ? s.publishing : s.publish}
        </button>
        {!lint.checking && lint.problems.length > 0 && <span class="problem">{s.fixFirst}</span>}
      </div>
      {done !== null && done.version === (rule?.version ?? null) && (
        <p class="ok" role="status" data-testid="publish-result">
          {done.text}
        </p>
      )}
    </section>
  );
}

function Diff({ before, after, s }: { before: string; after: string; s: RulesStrings }) {
  const parts = diffLines(before, after);
  if (!parts.some((part) => part.added || part.removed)) {
    return <p class="meta">{s.noTextChange}</p>;
  }
  return (
    <pre class="diff" data-testid="diff">
      {parts.flatMap((part, index) => {
        const mark = part.added ? "+" : part.removed ? "-" : " ";
        const kind = part.added ? "added" : part.removed ? "removed" : "same";
        const lines = part.value.replace(/\n$/, "").split("\n");
        return lines.map((line, n) => (
          <div key={`${index}-${n}`} class={`diff-line ${kind}`} data-testid={`diff-${kind}`}>
            {mark} {line}
          </div>
        ));
      })}
    </pre>
  );
}

function History({
  s,
  rules,
  rule,
  language,
  fail,
  onRolledBack,
}: {
  s: RulesStrings;
  rules: RulesApi;
  rule: Rule;
  language: Language;
  fail: Fail;
  onRolledBack: (rule: Rule) => void;
}) {
  const [versions, setVersions] = useState<RuleVersion[] | null>(null);
  const [open, setOpen] = useState<number | null>(null);
  const [comment, setComment] = useState("");
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<{ text: string; version: number | null } | null>(null);

  useEffect(() => {
    rules.versions(rule.id).then(setVersions).catch(fail);
  }, [rules, rule.id, rule.version, fail]);

  const rollback = (version: number) => {
    setBusy(true);
    setDone(null);
    rules
      .rollback(rule.id, version, comment)
      .then((found) => {
        setDone({ text: s.rolledBack(version, found.version ?? 0), version: found.version });
        setComment("");
        onRolledBack(found);
      })
      .catch(fail)
      .finally(() => setBusy(false));
  };

  if (versions === null) return null;
  return (
    <section class="pane" data-testid="history">
      <h2>{s.historyTitle}</h2>
      {done !== null && done.version === rule.version && (
        <p class="ok" role="status" data-testid="rollback-result">
          {done.text}
        </p>
      )}
      <label class="field">
        {s.rollbackComment}
        <input
          type="text"
          value={comment}
          maxLength={1000}
          data-testid="rollback-comment"
          onInput={(event) => setComment(event.currentTarget.value)}
        />
      </label>
      <ol class="versions">
        {versions.map((version, index) => {
          const before = versions[index + 1];
          const current = version.version === rule.version;
          return (
            <li key={version.version} data-testid="version" data-version={String(version.version)}>
              <div class="version-head">
                <strong>v{version.version}</strong>
                <span>{s.actions[version.action] ?? version.action}</span>
                <span class="meta">{s.changedBy(version.author, when(version.at, language))}</span>
                {current && <span class="badge state">{s.current}</span>}
              </div>
              {version.comment && <p class="version-comment">{version.comment}</p>}
              <div class="actions">
                <button
                  type="button"
                  class="secondary"
                  data-testid="show-diff"
                  onClick={() => setOpen(open === version.version ? null : version.version)}
                >
                  {open === version.version ? s.hideDiff : s.showDiff}
                </button>
                {!current && version.source !== null && (
                  <button
                    type="button"
                    class="secondary"
                    disabled={busy}
                    data-testid="rollback"
                    onClick={() => rollback(version.version)}
                  >
                    {s.rollback(version.version)}
                  </button>
                )}
              </div>
              {open === version.version && (
                <Diff before={before?.source ?? ""} after={version.source ?? ""} s={s} />
              )}
            </li>
          );
        })}
      </ol>
    </section>
  );
}
