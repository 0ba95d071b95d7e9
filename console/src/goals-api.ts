/**
 * What the goals page reads from the goals service: goals, org units and people (for names),
 * one goal's tree, check-ins and impact walk. Each answer is already limited by goals to what
 * the signed-in person may see; nothing here filters further.
 */
import { type Api, ApiError } from "./api";

export type GoalStatus = "on_track" | "at_risk" | "off_track" | "invalid" | "done" | "cancelled";
export type GoalType = "objective" | "key_result" | "kpi";
export type LinkKind = "contributes_to" | "depends_on";

/** GET /v1/goals/{id} (and each goal of GET /v1/goals), the fields the page shows. */
export interface Goal {
  id: string;
  title: string;
  type: GoalType;
  owner_id: string;
  org_unit_id?: string | null;
  period?: string | null;
  due?: string | null;
  start_value?: number | null;
  target_value?: number | null;
  current_value?: number | null;
  unit?: string | null;
  status: GoalStatus;
  contributes_to: { goal_id: string; weight: number }[];
  depends_on: string[];
  progress?: number | null;
  last_check_in_at?: string | null;
  confidence?: number | null;
}

export interface OrgUnit {
  id: string;
  name: string;
  kind: "company" | "department" | "team";
  parent_id?: string | null;
}

export interface PersonName {
  id: string;
  name: string;
}

export interface TreeNode {
  goal: Goal;
  depth: number;
  via: string;
  weight: number;
}

/** GET /v1/goals/{id}/tree. */
export interface GoalTree {
  goal: Goal;
  ancestors: TreeNode[];
  descendants: TreeNode[];
  depends_on: string[];
  dependents: string[];
}

export interface CheckIn {
  id: string;
  value?: number | null;
  status?: GoalStatus | null;
  confidence?: number | null;
  note?: string | null;
  by: string;
  at: string;
  progress?: number | null;
}

export interface PathStep {
  from_goal: string;
  to_goal: string;
  link: LinkKind;
  share: number;
}

export interface ImpactedGoal {
  goal_id: string;
  title?: string | null;
  type?: GoalType | null;
  status?: GoalStatus | null;
  owner_id?: string | null;
  owner_name?: string | null;
  org_unit_id?: string | null;
  depth: number;
  path: PathStep[];
  weight: number;
}

/** GET /v1/goals/{id}/impact: affected goals, nearest first, each by its shortest path. */
export interface GoalImpact {
  goal_id: string;
  affected: ImpactedGoal[];
}

/** Most pages of a listing read before the page says the list is cut short. */
const MAX_PAGES = 20;

/** Every goal the person may see (goals pages them, 1000 at a time); ``cut`` if more remain. */
export async function visibleGoals(api: Api): Promise<{ goals: Goal[]; cut: boolean }> {
  const goals: Goal[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ limit: "1000" });
    if (cursor !== null) {
      query.set("cursor", cursor);
    }
    const answer: { goals: Goal[]; next_cursor: string | null } = await api.get(
      "goals",
      "/v1/goals",
      query,
    );
    goals.push(...answer.goals);
    cursor = answer.next_cursor;
    if (cursor === null) {
      return { goals, cut: false };
    }
  }
  return { goals, cut: true };
}

/** Every org unit (names and levels; goals shows them to everyone signed in). */
export async function orgUnits(api: Api): Promise<Map<string, OrgUnit>> {
  const units = new Map<string, OrgUnit>();
  let cursor: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ limit: "1000" });
    if (cursor !== null) {
      query.set("cursor", cursor);
    }
    const answer = await api.get<OrgUnit[]>("goals", "/v1/org-units", query);
    for (const unit of answer) {
      units.set(unit.id, unit);
    }
    if (answer.length < 1000) {
      break;
    }
    cursor = answer[answer.length - 1]?.id ?? null;
  }
  return units;
}

/** The names of the people the person may see, by id. */
export async function peopleNames(api: Api): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  let after: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const query = new URLSearchParams({ limit: "1000" });
    if (after !== null) {
      query.set("after", after);
    }
    const answer = await api.get<PersonName[]>("goals", "/v1/people", query);
    for (const person of answer) {
      names.set(person.id, person.name);
    }
    if (answer.length < 1000) {
      break;
    }
    after = answer[answer.length - 1]?.id ?? null;
  }
  return names;
}

const one = (id: string) => `/v1/goals/${encodeURIComponent(id)}`;

export function goal(api: Api, id: string): Promise<Goal> {
  return api.get<Goal>("goals", one(id));
}

export function goalTree(api: Api, id: string): Promise<GoalTree> {
  return api.get<GoalTree>("goals", `${one(id)}/tree`);
}

/** The goal's check-ins, newest first (the latest 200). */
export async function checkIns(api: Api, id: string): Promise<CheckIn[]> {
  const query = new URLSearchParams({ limit: "200" });
  const answer = await api.get<{ check_ins: CheckIn[] }>("goals", `${one(id)}/check-ins`, query);
  return answer.check_ins;
}

export function goalImpact(api: Api, id: string): Promise<GoalImpact> {
  return api.get<GoalImpact>("goals", `${one(id)}/impact`);
}

/** 403 and 404 from goals: the goal is not there, or not the person's to see. */
export function isRefusal(error: unknown): error is ApiError {
  return error instanceof ApiError && (error.status === 403 || error.status === 404);
}

/** A goal's place in the alignment tree of the goals one person sees. */
export interface Branch {
  goal: Goal;
  /** Weight of its link to the parent shown above it (none for a root). */
  weight: number | null;
  children: Branch[];
}

/**
 * The alignment forest of ``goals``: each goal under the first goal it contributes to that
 * is among them, a root if none is. Roots and siblings in id order, as goals lists them.
 */
export function alignmentForest(goals: Goal[]): Branch[] {
  const byId = new Map(goals.map((g) => [g.id, g]));
  const branches = new Map<string, Branch>(
    goals.map((g) => [g.id, { goal: g, weight: null, children: [] }]),
  );
  const roots: Branch[] = [];
  for (const g of goals) {
    const branch = branches.get(g.id);
    if (branch === undefined) {
      continue;
    }
    const parentLink = g.contributes_to.find((link) => byId.has(link.goal_id));
    const parent = parentLink ? branches.get(parentLink.goal_id) : undefined;
    if (parentLink !== undefined && parent !== undefined && !reaches(parent, g.id, branches)) {
      branch.weight = parentLink.weight;
      parent.children.push(branch);
    } else {
      roots.push(branch);
    }
  }
  return roots;
}

/** Whether ``branch`` is ``id`` or lies under it as built so far (goals refuses cycles; this
 * keeps a page from looping on a broken store anyway). */
function reaches(branch: Branch, id: string, branches: Map<string, Branch>): boolean {
  let current: Goal | undefined = branch.goal;
  const seen = new Set<string>();
  while (current !== undefined && !seen.has(current.id)) {
    if (current.id === id) {
      return true;
    }
    seen.add(current.id);
    const up: string | undefined = current.contributes_to.find((l) =>
      branches.has(l.goal_id),
    )?.goal_id;
    current = up === undefined ? undefined : branches.get(up)?.goal;
  }
  return false;
}

/** One affected goal in the impact tree, under the goal its shortest path came through. */
export interface ImpactBranch {
  affected: ImpactedGoal;
  /** The last link of its path: how it is reached from its parent. */
  step: PathStep | null;
  children: ImpactBranch[];
}

/**
 * The impact walk as a tree: each affected goal under the goal its path reaches it from
 * (the failing goal for the first level), nearest first as goals lists them.
 */
export function impactTree(impact: GoalImpact): ImpactBranch[] {
  const branches = new Map<string, ImpactBranch>();
  const roots: ImpactBranch[] = [];
  for (const affected of impact.affected) {
    const step = affected.path[affected.path.length - 1] ?? null;
    const branch: ImpactBranch = { affected, step, children: [] };
    branches.set(affected.goal_id, branch);
    const parent = step === null ? undefined : branches.get(step.from_goal);
    if (parent !== undefined && step?.from_goal !== impact.goal_id) {
      parent.children.push(branch);
    } else {
      roots.push(branch);
    }
  }
  return roots;
}
