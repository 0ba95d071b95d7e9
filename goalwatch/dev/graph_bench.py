"""``goalwatch bench --mode impact``: the impact walk of a large goal graph, over HTTP.

It starts its own installation, loads a company of ``goals`` goals through ``POST /v1/goals``
(batches of 1000) and times ``GET /v1/goals/{id}/impact`` for key results picked at random.
The graph: one company objective, then levels of ten times as many goals each, down to
depth 6 (the deepest level takes what is left); every goal contributes to one goal of the
level above, one in ten to a second one there too (a diamond), and one in twenty of the
lower levels depends on a goal of another department (a cross link), always pointing to a
goal loaded later, so that the dependencies make no cycle.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from goalwatch.dev.bench import Latencies
from goalwatch.dev.stack import Stack, StackSettings

DEPTH = 6
BATCH = 1000


@dataclass(frozen=True)
class ImpactResult:
    """What one impact benchmark measured."""

    goals: int
    links: int
    load_seconds: float
    walks: Latencies
    server: Latencies
    top: Latencies
    page: Latencies
    affected_mean: float
    affected_max: int

    def report(self) -> str:
        """The lines to paste into docs/benchmarks.md."""
        w, s = self.walks, self.server
        return "\n".join(
            [
                f"graph: {self.goals} goals, {self.links} links, depth {DEPTH}, loaded over "
                f"HTTP in {self.load_seconds:.1f} s ({self.goals / self.load_seconds:.0f} goals/s)",
                f"GET /v1/goals/{{id}}/impact, {self.walks.count} key results: "
                f"p50 / p95 / p99 / max {w.p50:.1f} / {w.p95:.1f} / {w.p99:.1f} / {w.max:.1f} ms",
                f"  in the service (walk script + reads, Server-Timing): p50 / p95 / p99 / max "
                f"{s.p50:.1f} / {s.p95:.1f} / {s.p99:.1f} / {s.max:.1f} ms",
                f"affected goals per answer: mean {self.affected_mean:.1f}, "
                f"max {self.affected_max}",
                f"GET /v1/goals/<company objective> (progress of the {self.goals - 1} below), "
                f"100 times: "
                f"p50 / p99 {self.top.p50:.1f} / {self.top.p99:.1f} ms",
                f"GET /v1/goals?limit=100, 100 times: "
                f"p50 / p99 {self.page.p50:.1f} / {self.page.p99:.1f} ms",
            ]
        )


def company(goals: int, *, seed: int = 7) -> list[list[dict[str, Any]]]:
    """The goals of the benchmark's company, level by level (level 0: the company)."""
    rng = random.Random(seed)
    sizes = [1]
    while len(sizes) < DEPTH - 1:
        sizes.append(min(sizes[-1] * 10, goals - sum(sizes)))
    sizes.append(max(goals - sum(sizes), 0))
    levels: list[list[dict[str, Any]]] = []
    department: dict[str, int] = {}
    for depth, size in enumerate(sizes):
        level: list[dict[str, Any]] = []
        for n in range(size):
            goal_id = f"g{depth}-{n}"
            goal: dict[str, Any] = {
                "id": goal_id,
                "title": f"Goal {goal_id}",
                "type": "objective" if depth < 3 else "key_result",
                "owner_id": f"owner-{depth}-{n % 997}",
                "start_value": 0,
                "target_value": 100,
                "current_value": rng.randint(0, 100),
            }
            if depth:
                above = levels[depth - 1]
                parent = above[n * len(above) // size]
                parents = [{"goal_id": parent["id"], "weight": rng.randint(1, 5)}]
                if rng.random() < 0.1 and len(above) > 1:
                    other = rng.choice(above)["id"]
                    if other != parent["id"]:
                        parents.append({"goal_id": other, "weight": 1})
                goal["contributes_to"] = parents
                department[goal_id] = (
                    department[parent["id"]] if depth > 1 else n
                )  # the level-1 goal it sits under
            level.append(goal)
        levels.append(level)
    # Cross links: a goal of levels 3+ depends on a goal further down the order (a later
    # level, or later in its own) in another department.
    for depth in range(3, DEPTH):
        for n, goal in enumerate(levels[depth]):
            if rng.random() < 0.05:
                later = rng.randint(depth, DEPTH - 1)
                first = n + 1 if later == depth else 0
                if first >= len(levels[later]):
                    continue
                target = levels[later][rng.randrange(first, len(levels[later]))]
                if department[target["id"]] != department[goal["id"]]:
                    goal["depends_on"] = [target["id"]]
    return levels


def run(*, goals: int, walks: int, rules_dir: Path) -> ImpactResult:
    """Start an installation, load the graph, time the walks, stop it."""
    levels = company(goals)
    flat = [goal for level in levels for goal in level]
    links = sum(len(g.get("contributes_to", [])) + len(g.get("depends_on", [])) for g in flat)
    with tempfile.TemporaryDirectory(prefix="goalwatch-bench-") as state:
        settings = StackSettings.on_free_ports(Path(state), rules_dir)
        stack = Stack(settings=settings)
        stack.start()
        try:
            url = settings.url("goals")
            with stack.client(timeout=120) as http:
                began = time.perf_counter()
                for start in range(0, len(flat), BATCH):
                    http.post(
                        f"{url}/v1/goals", json=flat[start : start + BATCH]
                    ).raise_for_status()
                load = time.perf_counter() - began
                rng = random.Random(11)
                deepest = next(level for level in reversed(levels) if level)
                picks = [rng.choice(deepest)["id"] for _ in range(walks)]
                seconds: list[float] = []
                server: list[float] = []
                sizes: list[int] = []
                for goal_id in picks:
                    began = time.perf_counter()
                    answer = http.get(f"{url}/v1/goals/{goal_id}/impact")
                    seconds.append(time.perf_counter() - began)
                    answer.raise_for_status()
                    timing = answer.headers["server-timing"]
                    server.append(float(timing.split("dur=")[1]) / 1000)
                    sizes.append(len(answer.json()["affected"]))
                reads: dict[str, list[float]] = {"top": [], "page": []}
                for _ in range(100):
                    for name, path in (
                        ("top", f"/v1/goals/{levels[0][0]['id']}"),
                        ("page", "/v1/goals?limit=100"),
                    ):
                        began = time.perf_counter()
                        http.get(f"{url}{path}").raise_for_status()
                        reads[name].append(time.perf_counter() - began)
        finally:
            stack.stop()
    return ImpactResult(
        goals=len(flat),
        links=links,
        load_seconds=load,
        walks=Latencies.of(seconds),
        server=Latencies.of(server),
        top=Latencies.of(reads["top"]),
        page=Latencies.of(reads["page"]),
        affected_mean=sum(sizes) / len(sizes),
        affected_max=max(sizes),
    )
