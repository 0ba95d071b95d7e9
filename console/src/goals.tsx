/**
 * The goals page: the alignment tree of the goals the person may see (``/goals``), one goal
 * with its place in the tree, dependencies and check-in history (``/goals/<id>``), and what
 * depends on it, as a tree (``/goals/<id>/impact``). Goals decides what each person sees;
 * the page shows its answers.
 */
import {
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";

import { SignedOut } from "./api";
import {
  alignmentForest,
  type Branch,
  type CheckIn,
  checkIns,
  type Goal,
  goal as readGoal,
  goalImpact,
  type GoalImpact,
  goalTree,
  type GoalTree,
  type ImpactBranch,
  impactTree,
  isRefusal,
  orgUnits,
  type OrgUnit,
  peopleNames,
  type TreeNode,
  visibleGoals,
} from "./goals-api";
import { type GoalsStrings, goalsStrings } from "./goals-strings";
import type { Language } from "./i18n";
import type { PageProps } from "./page";
import "./goals.css";

Chart.register(
  LineController,
  LineElement,
  PointElement,
  LinearScale,
  CategoryScale,
  Tooltip,
  Legend,
);

type Props = PageProps & { id?: string };

/** Names for ids: org units (all) and the people the person may see. */
interface Directory {
  units: Map<string, OrgUnit>;
  people: Map<string, string>;
}

type Loaded<T> =
  | { state: "loading" }
  | { state: "done"; value: T }
  | { state: "refused"; status: number }
  | { state: "failed"; message: string };

/** ``load`` run whenever ``key`` changes (and on retry); a 401 signs the person out. */
function useLoad<T>(
  load: () => Promise<T>,
  key: string,
  onSignedOut: () => void,
): [Loaded<T>, () => void] {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: "loading" });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let current = true;
    setLoaded({ state: "loading" });
    load()
      .then((value) => current && setLoaded({ state: "done", value }))
      .catch((error: unknown) => {
        if (!current) {
          return;
        }
        if (error instanceof SignedOut) {
          onSignedOut();
        } else if (isRefusal(error)) {
          setLoaded({ state: "refused", status: error.status });
        } else {
          setLoaded({
            state: "failed",
            message: error instanceof Error ? error.message : String(error),
          });
        }
      });
    return () => {
      current = false;
    };
    // ``load`` is rebuilt each render; ``key`` says when what it reads changed.
  }, [key, attempt]);
  const retry = useCallback(() => setAttempt((n) => n + 1), []);
  return [loaded, retry];
}

/** What to show instead of an answer: loading, refused (403/404) or failed (with a retry). */
function NotLoaded({
  loaded,
  s,
  loading,
  retry,
}: {
  loaded: Loaded<unknown>;
  s: GoalsStrings;
  loading: string;
  retry: () => void;
}) {
  switch (loaded.state) {
    case "loading":
      return <p class="muted">{loading}</p>;
    case "refused":
      return (
        <p class="goals-problem" role="alert" data-testid="goals-refused">
          {loaded.status === 404 ? s.notFound : s.refused}
        </p>
      );
    case "failed":
      return (
        <div class="goals-problem" role="alert" data-testid="goals-failed">
          <p>{s.failed(loaded.message)}</p>
          <button type="button" class="secondary" onClick={retry}>
            {s.retry}
          </button>
        </div>
      );
    default:
      return null;
  }
}

function percent(value: number, language: Language): string {
  return new Intl.NumberFormat(language === "zh" ? "zh-CN" : "en-GB", {
    style: "percent",
    maximumFractionDigits: value < 0.1 && value > 0 ? 1 : 0,
  }).format(value);
}

function number(value: number, language: Language): string {
  return new Intl.NumberFormat(language === "zh" ? "zh-CN" : "en-GB", {
    maximumFractionDigits: 2,
  }).format(value);
}

/** A value with its unit: "9%", "6 doctors". */
function measured(value: number, unit: string | null | undefined, language: Language): string {
  const shown = number(value, language);
  if (!unit) {
    return shown;
  }
  return unit === "%" ? `${shown}%` : `${shown} ${unit}`;
}

function when(iso: string, language: Language, withTime = true): string {
  return new Intl.DateTimeFormat(language === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "medium",
    ...(withTime ? { timeStyle: "short" } : {}),
  }).format(new Date(iso));
}

function Status({ status, s }: { status: string | null | undefined; s: GoalsStrings }) {
  if (!status) {
    return null;
  }
  return (
    <span class={`goal-status ${status}`} data-testid="goal-status" data-status={status}>
      {s.status[status] ?? status}
    </span>
  );
}

function Progress({
  progress,
  s,
  language,
}: {
  progress: number | null | undefined;
  s: GoalsStrings;
  language: Language;
}) {
  if (progress === null || progress === undefined) {
    return <span class="goal-meta">{s.noProgress}</span>;
  }
  // Goals counts progress in percent (0-100).
  const shown = Math.max(0, Math.min(100, progress)) / 100;
  return (
    <span class="goal-progress" data-testid="goal-progress">
      <span class="track" aria-hidden="true">
        <span class="fill" style={{ width: `${(shown * 100).toFixed(1)}%` }} />
      </span>
      <span class="goal-meta">{s.progress(percent(shown, language))}</span>
    </span>
  );
}

/** "Owner · Org unit (level)", with names only (an id nobody may name is left out). */
function Who({
  ownerId,
  ownerName,
  unitId,
  directory,
  s,
}: {
  ownerId: string | null | undefined;
  ownerName?: string | null | undefined;
  unitId: string | null | undefined;
  directory: Directory;
  s: GoalsStrings;
}) {
  const owner = ownerName ?? (ownerId ? directory.people.get(ownerId) : undefined);
  const unit = unitId ? directory.units.get(unitId) : undefined;
  const parts: string[] = [];
  if (owner) {
    parts.push(owner);
  }
  if (unit) {
    parts.push(`${unit.name} (${s.unitKind[unit.kind] ?? unit.kind})`);
  }
  return parts.length ? (
    <span class="goal-meta" data-testid="goal-who">
      {parts.join(" · ")}
    </span>
  ) : null;
}

async function loadDirectory(api: PageProps["api"]): Promise<Directory> {
  const [units, people] = await Promise.all([orgUnits(api), peopleNames(api)]);
  return { units, people };
}

// ----------------------------------------------------------------------------- the tree

interface Overview {
  goals: Goal[];
  cut: boolean;
  directory: Directory;
}

function DependencyLinks({
  goal,
  byId,
  neededBy,
  s,
}: {
  goal: Goal;
  byId: Map<string, Goal>;
  neededBy: Goal[];
  s: GoalsStrings;
}) {
  if (goal.depends_on.length === 0 && neededBy.length === 0) {
    return null;
  }
  const link = (other: Goal | undefined, id: string, direction: "out" | "in") => {
    const cross = other !== undefined && other.org_unit_id !== goal.org_unit_id;
    return (
      <li key={`${direction}-${id}`}>
        {other === undefined ? (
          <span class="dep-link outside" data-testid="dependency" data-direction={direction}>
            {s.outsideView}
          </span>
        ) : (
          <a
            class={`dep-link${cross ? " cross" : ""}`}
            href={`/goals/${encodeURIComponent(id)}`}
            data-testid="dependency"
            data-direction={direction}
            data-goal-id={id}
          >
            {other.title}
            {cross && <span class="cross-mark"> · {s.crossTeam}</span>}
          </a>
        )}
      </li>
    );
  };
  return (
    <div class="deps">
      {goal.depends_on.length > 0 && (
        <div class="dep-row">
          <span class="dep-label">⇠ {s.dependsOn}</span>
          <ul>{goal.depends_on.map((id) => link(byId.get(id), id, "out"))}</ul>
        </div>
      )}
      {neededBy.length > 0 && (
        <div class="dep-row">
          <span class="dep-label">⇢ {s.neededBy}</span>
          <ul>{neededBy.map((other) => link(other, other.id, "in"))}</ul>
        </div>
      )}
    </div>
  );
}

function TreeBranch({
  branch,
  byId,
  dependents,
  directory,
  s,
  language,
}: {
  branch: Branch;
  byId: Map<string, Goal>;
  dependents: Map<string, Goal[]>;
  directory: Directory;
  s: GoalsStrings;
  language: Language;
}) {
  const g = branch.goal;
  return (
    <li data-testid="goal" data-goal-id={g.id} data-status={g.status}>
      <div class={`goal-card ${g.status}`}>
        <div class="goal-head">
          <Status status={g.status} s={s} />
          <span class="goal-type">{s.type[g.type] ?? g.type}</span>
          {branch.weight !== null && (
            <span class="goal-meta">{s.weight(number(branch.weight, language))}</span>
          )}
        </div>
        <a class="goal-title" href={`/goals/${encodeURIComponent(g.id)}`}>
          {g.title}
        </a>
        <Who ownerId={g.owner_id} unitId={g.org_unit_id} directory={directory} s={s} />
        <Progress progress={g.progress} s={s} language={language} />
        <DependencyLinks goal={g} byId={byId} neededBy={dependents.get(g.id) ?? []} s={s} />
      </div>
      {branch.children.length > 0 && (
        <ul class="goal-tree">
          {branch.children.map((child) => (
            <TreeBranch
              key={child.goal.id}
              branch={child}
              byId={byId}
              dependents={dependents}
              directory={directory}
              s={s}
              language={language}
            />
          ))}
        </ul>
      )}
    </li>
  );
}

function GoalsTree({ api, t, language, onSignedOut }: Props) {
  const s = goalsStrings(language);
  const [loaded, retry] = useLoad<Overview>(
    async () => {
      const [{ goals, cut }, directory] = await Promise.all([
        visibleGoals(api),
        loadDirectory(api),
      ]);
      return { goals, cut, directory };
    },
    "tree",
    onSignedOut,
  );
  const view = useMemo(() => {
    if (loaded.state !== "done") {
      return null;
    }
    const { goals } = loaded.value;
    const byId = new Map(goals.map((g) => [g.id, g]));
    const dependents = new Map<string, Goal[]>();
    for (const g of goals) {
      for (const id of g.depends_on) {
        dependents.set(id, [...(dependents.get(id) ?? []), g]);
      }
    }
    return { byId, dependents, forest: alignmentForest(goals) };
  }, [loaded]);

  return (
    <section class="page goals" data-testid="goals-page">
      <h1>{t.goals}</h1>
      <p class="goal-meta">{s.intro}</p>
      {loaded.state !== "done" || view === null ? (
        <NotLoaded loaded={loaded} s={s} loading={t.loading} retry={retry} />
      ) : view.forest.length === 0 ? (
        <p data-testid="goals-empty">{s.none}</p>
      ) : (
        <>
          {loaded.value.cut && <p class="goal-meta">{s.cut}</p>}
          <ul class="goal-tree root" data-testid="goal-tree">
            {view.forest.map((branch) => (
              <TreeBranch
                key={branch.goal.id}
                branch={branch}
                byId={view.byId}
                dependents={view.dependents}
                directory={loaded.value.directory}
                s={s}
                language={language}
              />
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

// ----------------------------------------------------------------------------- one goal

interface OneGoal {
  tree: GoalTree;
  history: CheckIn[];
  /** The goals it depends on and that depend on it, each null if not the person's to see. */
  linked: Map<string, Goal | null>;
  directory: Directory;
}

function CheckInChart({
  goal,
  history,
  s,
  language,
}: {
  goal: Goal;
  history: CheckIn[];
  s: GoalsStrings;
  language: Language;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const points = useMemo(
    () =>
      history
        .filter((c) => c.value !== null && c.value !== undefined)
        .slice()
        .reverse(),
    [history],
  );
  useEffect(() => {
    if (canvas.current === null || points.length === 0) {
      return;
    }
    const labels = points.map((c) => when(c.at, language, false));
    const target = goal.target_value;
    const chart = new Chart(canvas.current, {
      type: "line",
      data: {
        labels,
        datasets: [
          {
            label: goal.unit ? `${s.chartValue} (${goal.unit})` : s.chartValue,
            data: points.map((c) => c.value ?? null),
            borderColor: "#1f5fbf",
            backgroundColor: "#1f5fbf",
            tension: 0.2,
          },
          ...(target === null || target === undefined
            ? []
            : [
                {
                  label: s.chartTarget,
                  data: points.map(() => target),
                  borderColor: "#2e7d32",
                  backgroundColor: "#2e7d32",
                  borderDash: [6, 4],
                  pointRadius: 0,
                },
              ]),
        ],
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: "bottom" } },
      },
    });
    return () => chart.destroy();
  }, [points, goal, s, language]);
  if (points.length === 0) {
    return null;
  }
  return (
    <div class="chart">
      <canvas
        ref={canvas}
        role="img"
        aria-label={s.chartLabel(goal.title)}
        data-testid="check-in-chart"
        data-points={points.length}
      />
    </div>
  );
}

function CheckIns({
  goal,
  history,
  directory,
  s,
  language,
}: {
  goal: Goal;
  history: CheckIn[];
  directory: Directory;
  s: GoalsStrings;
  language: Language;
}) {
  return (
    <section class="goal-section" data-testid="check-ins">
      <h2>{s.checkIns}</h2>
      {history.length === 0 ? (
        <p class="goal-meta" data-testid="no-check-ins">
          {s.noCheckIns}
        </p>
      ) : (
        <>
          <CheckInChart goal={goal} history={history} s={s} language={language} />
          <ol class="check-ins">
            {history.map((c) => (
              <li key={c.id} data-testid="check-in">
                <div class="goal-head">
                  <Status status={c.status} s={s} />
                  {c.value !== null && c.value !== undefined && (
                    <span>
                      {s.value}: {measured(c.value, goal.unit, language)}
                    </span>
                  )}
                  {c.confidence !== null && c.confidence !== undefined && (
                    <span class="goal-meta">
                      {s.confidence}: {percent(c.confidence, language)}
                    </span>
                  )}
                </div>
                {c.note && <p class="note">{c.note}</p>}
                <span class="goal-meta">
                  {s.checkInBy(directory.people.get(c.by) ?? "", when(c.at, language))}
                </span>
              </li>
            ))}
          </ol>
        </>
      )}
    </section>
  );
}

/** Ancestors (nearest first from the API) shown top-down, each under the one it counts to. */
function Ancestors({ nodes, s }: { nodes: TreeNode[]; s: GoalsStrings }) {
  if (nodes.length === 0) {
    return null;
  }
  return (
    <div class="goal-section" data-testid="ancestors">
      <h2>{s.countsTowards}</h2>
      <ol class="breadcrumb">
        {nodes
          .slice()
          .reverse()
          .map((node) => (
            <li key={node.goal.id}>
              <a href={`/goals/${encodeURIComponent(node.goal.id)}`}>{node.goal.title}</a>
            </li>
          ))}
      </ol>
    </div>
  );
}

function Descendants({
  root,
  nodes,
  directory,
  s,
  language,
}: {
  root: string;
  nodes: TreeNode[];
  directory: Directory;
  s: GoalsStrings;
  language: Language;
}) {
  if (nodes.length === 0) {
    return null;
  }
  const under = new Map<string, TreeNode[]>();
  for (const node of nodes) {
    under.set(node.via, [...(under.get(node.via) ?? []), node]);
  }
  const seen = new Set<string>();
  const level = (id: string) => {
    const children = (under.get(id) ?? []).filter((n) => !seen.has(n.goal.id));
    if (children.length === 0) {
      return null;
    }
    children.forEach((n) => seen.add(n.goal.id));
    return (
      <ul class="goal-tree">
        {children.map((node) => (
          <li key={node.goal.id} data-testid="descendant" data-goal-id={node.goal.id}>
            <div class={`goal-card ${node.goal.status}`}>
              <div class="goal-head">
                <Status status={node.goal.status} s={s} />
                <span class="goal-meta">{s.weight(number(node.weight, language))}</span>
              </div>
              <a class="goal-title" href={`/goals/${encodeURIComponent(node.goal.id)}`}>
                {node.goal.title}
              </a>
              <Who
                ownerId={node.goal.owner_id}
                unitId={node.goal.org_unit_id}
                directory={directory}
                s={s}
              />
              <Progress progress={node.goal.progress} s={s} language={language} />
            </div>
            {level(node.goal.id)}
          </li>
        ))}
      </ul>
    );
  };
  return (
    <div class="goal-section" data-testid="descendants">
      <h2>{s.contributors}</h2>
      {level(root)}
    </div>
  );
}

function Dependencies({ one, s }: { one: OneGoal; s: GoalsStrings }) {
  const { tree, linked } = one;
  const item = (id: string, direction: "out" | "in") => {
    const other = linked.get(id) ?? null;
    const cross = other !== null && other.org_unit_id !== tree.goal.org_unit_id;
    return (
      <li key={`${direction}-${id}`}>
        {other === null ? (
          <span class="dep-link outside" data-testid="dependency" data-direction={direction}>
            {s.outsideView}
          </span>
        ) : (
          <a
            class={`dep-link${cross ? " cross" : ""}`}
            href={`/goals/${encodeURIComponent(id)}`}
            data-testid="dependency"
            data-direction={direction}
            data-goal-id={id}
          >
            {other.title}
            {cross && <span class="cross-mark"> · {s.crossTeam}</span>}
          </a>
        )}
      </li>
    );
  };
  return (
    <div class="goal-section" data-testid="dependencies">
      <h2>{s.dependencies}</h2>
      {tree.depends_on.length === 0 && tree.dependents.length === 0 ? (
        <p class="goal-meta">{s.noDependencies}</p>
      ) : (
        <div class="deps">
          {tree.depends_on.length > 0 && (
            <div class="dep-row">
              <span class="dep-label">⇠ {s.dependsOn}</span>
              <ul>{tree.depends_on.map((id) => item(id, "out"))}</ul>
            </div>
          )}
          {tree.dependents.length > 0 && (
            <div class="dep-row">
              <span class="dep-label">⇢ {s.neededBy}</span>
              <ul>{tree.dependents.map((id) => item(id, "in"))}</ul>
            </div>
          )}
        </div>
      )}
    </div>
  );
}

function GoalHeader({
  goal,
  directory,
  s,
  language,
}: {
  goal: Goal;
  directory: Directory;
  s: GoalsStrings;
  language: Language;
}) {
  const facts: [string, string][] = [];
  if (goal.current_value !== null && goal.current_value !== undefined) {
    facts.push([s.value, measured(goal.current_value, goal.unit, language)]);
  }
  if (goal.target_value !== null && goal.target_value !== undefined) {
    facts.push([s.target, measured(goal.target_value, goal.unit, language)]);
  }
  if (goal.due) {
    facts.push([s.due, when(goal.due, language, false)]);
  }
  if (goal.confidence !== null && goal.confidence !== undefined) {
    facts.push([s.confidence, percent(goal.confidence, language)]);
  }
  return (
    <div class={`goal-card ${goal.status}`} data-testid="goal-header" data-goal-id={goal.id}>
      <div class="goal-head">
        <Status status={goal.status} s={s} />
        <span class="goal-type">{s.type[goal.type] ?? goal.type}</span>
      </div>
      <h1 data-testid="goal-title">{goal.title}</h1>
      <Who ownerId={goal.owner_id} unitId={goal.org_unit_id} directory={directory} s={s} />
      <Progress progress={goal.progress} s={s} language={language} />
      {facts.length > 0 && (
        <dl class="facts">
          {facts.map(([name, value]) => (
            <div key={name}>
              <dt>{name}</dt>
              <dd>{value}</dd>
            </div>
          ))}
        </dl>
      )}
    </div>
  );
}

function GoalPage({ api, t, language, onSignedOut, goalId }: Props & { goalId: string }) {
  const s = goalsStrings(language);
  const [loaded, retry] = useLoad<OneGoal>(
    async () => {
      const [tree, history, directory] = await Promise.all([
        goalTree(api, goalId),
        checkIns(api, goalId),
        loadDirectory(api),
      ]);
      const ids = [...new Set([...tree.depends_on, ...tree.dependents])];
      const found = await Promise.all(
        ids.map((id) =>
          readGoal(api, id).catch((error: unknown) => {
            if (isRefusal(error)) {
              return null;
            }
            throw error;
          }),
        ),
      );
      const linked = new Map(ids.map((id, i) => [id, found[i] ?? null]));
      return { tree, history, linked, directory };
    },
    goalId,
    onSignedOut,
  );
  return (
    <section class="page goals" data-testid="goal-page">
      <a class="back" href="/goals">
        ← {s.back}
      </a>
      {loaded.state !== "done" ? (
        <NotLoaded loaded={loaded} s={s} loading={t.loading} retry={retry} />
      ) : (
        <>
          <GoalHeader
            goal={loaded.value.tree.goal}
            directory={loaded.value.directory}
            s={s}
            language={language}
          />
          <p>
            <a
              class="button-link"
              href={`/goals/${encodeURIComponent(goalId)}/impact`}
              data-testid="impact-link"
            >
              {s.whatDepends}
            </a>
          </p>
          <Ancestors nodes={loaded.value.tree.ancestors} s={s} />
          <Descendants
            root={goalId}
            nodes={loaded.value.tree.descendants}
            directory={loaded.value.directory}
            s={s}
            language={language}
          />
          <Dependencies one={loaded.value} s={s} />
          <CheckIns
            goal={loaded.value.tree.goal}
            history={loaded.value.history}
            directory={loaded.value.directory}
            s={s}
            language={language}
          />
        </>
      )}
    </section>
  );
}

// ----------------------------------------------------------------------------- the impact

interface Impact {
  goal: Goal;
  impact: GoalImpact;
  directory: Directory;
}

function ImpactNode({
  branch,
  titles,
  directory,
  s,
  language,
}: {
  branch: ImpactBranch;
  titles: Map<string, string>;
  directory: Directory;
  s: GoalsStrings;
  language: Language;
}) {
  const a = branch.affected;
  const path = [a.path[0]?.from_goal, ...a.path.map((step) => step.to_goal)]
    .filter((id): id is string => id !== undefined)
    .map((id) => titles.get(id) ?? s.outsideView);
  return (
    <li
      data-testid="impacted"
      data-goal-id={a.goal_id}
      data-depth={a.depth}
      data-weight={a.weight}
    >
      <div class={`goal-card ${a.status ?? ""}`}>
        <div class="goal-head">
          {branch.step !== null && (
            <span class={`impact-link ${branch.step.link}`}>
              {s.via[branch.step.link] ?? branch.step.link}
              {branch.step.link === "contributes_to" &&
                ` · ${s.share(percent(branch.step.share, language))}`}
            </span>
          )}
          <Status status={a.status} s={s} />
        </div>
        <a class="goal-title" href={`/goals/${encodeURIComponent(a.goal_id)}`}>
          {a.title ?? s.outsideView}
        </a>
        <Who
          ownerId={a.owner_id}
          ownerName={a.owner_name}
          unitId={a.org_unit_id}
          directory={directory}
          s={s}
        />
        <span class="impact-weight" data-testid="impact-weight">
          {s.rests(percent(a.weight, language))}
        </span>
        <span class="impact-path" data-testid="impact-path">
          {s.path}: {path.join(" → ")}
        </span>
      </div>
      {branch.children.length > 0 && (
        <ul class="goal-tree">
          {branch.children.map((child) => (
            <ImpactNode
              key={child.affected.goal_id}
              branch={child}
              titles={titles}
              directory={directory}
              s={s}
              language={language}
            />
          ))}
        </ul>
      )}
    </li>
  );
}

function ImpactPage({ api, t, language, onSignedOut, goalId }: Props & { goalId: string }) {
  const s = goalsStrings(language);
  const [loaded, retry] = useLoad<Impact>(
    async () => {
      const [goal, impact, directory] = await Promise.all([
        readGoal(api, goalId),
        goalImpact(api, goalId),
        loadDirectory(api),
      ]);
      return { goal, impact, directory };
    },
    goalId,
    onSignedOut,
  );
  const view = useMemo(() => {
    if (loaded.state !== "done") {
      return null;
    }
    const { goal, impact } = loaded.value;
    const titles = new Map<string, string>([[goal.id, goal.title]]);
    for (const a of impact.affected) {
      if (a.title) {
        titles.set(a.goal_id, a.title);
      }
    }
    return { titles, roots: impactTree(impact) };
  }, [loaded]);
  return (
    <section class="page goals" data-testid="impact-page">
      <a class="back" href={`/goals/${encodeURIComponent(goalId)}`}>
        ← {s.backToGoal}
      </a>
      {loaded.state !== "done" || view === null ? (
        <NotLoaded loaded={loaded} s={s} loading={t.loading} retry={retry} />
      ) : (
        <>
          <h1 data-testid="impact-title">{s.impactTitle(loaded.value.goal.title)}</h1>
          <p class="goal-meta">{s.impactIntro}</p>
          <div class="goal-card impact-root" data-testid="impact-root">
            <div class="goal-head">
              <Status status={loaded.value.goal.status} s={s} />
              <span class="goal-type">{s.type[loaded.value.goal.type]}</span>
            </div>
            <a class="goal-title" href={`/goals/${encodeURIComponent(goalId)}`}>
              {loaded.value.goal.title}
            </a>
            <Who
              ownerId={loaded.value.goal.owner_id}
              unitId={loaded.value.goal.org_unit_id}
              directory={loaded.value.directory}
              s={s}
            />
            <strong data-testid="impact-count">
              {s.impactCount(loaded.value.impact.affected.length)}
            </strong>
          </div>
          {view.roots.length === 0 ? (
            <p data-testid="impact-none">{s.impactNone}</p>
          ) : (
            <ul class="goal-tree root impact" data-testid="impact-tree">
              {view.roots.map((branch) => (
                <ImpactNode
                  key={branch.affected.goal_id}
                  branch={branch}
                  titles={view.titles}
                  directory={loaded.value.directory}
                  s={s}
                  language={language}
                />
              ))}
            </ul>
          )}
        </>
      )}
    </section>
  );
}

/** The goals page: the tree (``/goals``), a goal (``/goals/<id>``) or its impact. */
export function Goals(props: Props) {
  const [goalId, view] = (props.id ?? "").split("/");
  if (!goalId) {
    return <GoalsTree {...props} />;
  }
  if (view === "impact") {
    return <ImpactPage key={`impact-${goalId}`} {...props} goalId={goalId} />;
  }
  return <GoalPage key={goalId} {...props} goalId={goalId} />;
}
