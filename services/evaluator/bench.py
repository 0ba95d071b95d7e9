"""The evaluator stage of ``goalwatch bench --mode evaluator``, run as a process of its own.

``python -m services.evaluator.bench --nats-url ... --rules-dir ... --events FILE`` (Redis
at ``GOALWATCH_REDIS_URL``, as a user that may flush it, or ``--redis-url``) times :meth:`Evaluator.handle_batch` on the events in ``FILE`` (one
``MetricRecorded`` JSON per line), in batches of the consumer's size decoded as the consumer
decodes them, with the real :class:`StreakStore` on that Redis and alerts published to
JetStream through the service's own :class:`AlertPublisher`; subject names from a stub (asked
only when an alert fires), no rule scoped. It prints one JSON line: rates, alerts published,
Redis memory and keys grown (``keys``: Redis keys, one threshold hash per subject's metric;
``alert_keys``: the rules' states those hashes hold, one per subject and rule reached), and
this process's RSS. The kernel's bench
(``goalwatch/dev/evaluator_bench.py``) starts it, so the kernel imports no service and the
RSS is the evaluator's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from goalwatch.connections import nats_access, redis_client
from goalwatch.contracts import MetricRecorded
from goalwatch.messaging import new_broker
from goalwatch.rules import RuleEngine, load_rules, metric_rules
from goalwatch.settings import ServiceSettings
from services.evaluator.app import CONSUMER
from services.evaluator.evaluation import Evaluator
from services.evaluator.publishing import AlertPublisher
from services.evaluator.streaks import KEY_PREFIX, StreakStore


class _Names:
    """Subjects named by their ids: the directory view is not what is measured here."""

    async def name_of(self, *, subject: str) -> str:
        return subject


async def _alert_keys(redis: Redis) -> int:
    """How many alert keys' threshold states the Redis holds (``doc:<fp>`` fields)."""
    count = 0
    async for key in redis.scan_iter(match=f"{KEY_PREFIX}*:threshold", count=1000):
        count += sum(1 for field in await redis.hkeys(key) if str(field).startswith("doc:"))
    return count


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(
    *, redis_url: str, nats_url: str, rules_dir: Path, data: list[bytes], profile: Path | None
) -> dict[str, Any]:
    """Flush Redis, evaluate ``data`` and say what it took (see the module's description)."""
    rss_before = _rss_mib()
    rules = metric_rules(load_rules(rules_dir))
    redis = redis_client(redis_url)
    await redis.flushall()
    before = int((await redis.info("memory"))["used_memory"])
    # The login comes from the environment (GOALWATCH_NATS_USER, ...), never the command line.
    broker = new_broker(nats_access(ServiceSettings(nats_url=nats_url)), name="bench-evaluator")
    publisher = AlertPublisher(broker)
    published = 0

    async def publish(alert: Any, subject: str, msg_id: str) -> None:
        nonlocal published
        published += 1
        await publisher(alert, subject, msg_id)

    await broker.start()
    evaluator = Evaluator(
        engine=RuleEngine(rules),
        streaks=StreakStore(redis),
        publish=publish,
        names=_Names(),
        rules=rules,
    )
    profiler = cProfile.Profile() if profile else None
    try:
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        for first in range(0, len(data), CONSUMER.batch_size):
            # Decoded per batch, as the consumer hands them over.
            batch = [
                MetricRecorded.model_validate_json(raw)
                for raw in data[first : first + CONSUMER.batch_size]
            ]
            failures = await evaluator.handle_batch(batch)
            if failures:
                failure = next(iter(failures.values()))
                raise RuntimeError(f"event {failure.event.id} failed") from failure.error
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler and profile:
            profiler.dump_stats(profile)
        grown = int((await redis.info("memory"))["used_memory"]) - before
        keys = int(await redis.dbsize())
        alert_keys = await _alert_keys(redis)
    finally:
        await broker.stop()
        await redis.aclose()
    rss = _rss_mib()
    return {
        "wall": len(data) / wall,
        "cpu": len(data) / max(cpu, 1e-9),
        "published": published,
        "redis_mib": grown / 2**20,
        "keys": keys,
        "alert_keys": alert_keys,
        "rss_mib": rss,
        "rss_grown_mib": rss - rss_before,
    }


def main() -> None:
    """Parse the arguments, measure, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    # From the environment by default: a URL holding a password is not for the process list.
    parser.add_argument("--redis-url", default=None, help="default: GOALWATCH_REDIS_URL")
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--rules-dir", type=Path, required=True)
    parser.add_argument("--events", type=Path, required=True, help="one event JSON per line")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile here")
    args = parser.parse_args()
    data = args.events.read_bytes().splitlines()
    result = asyncio.run(
        measure(
            redis_url=args.redis_url or ServiceSettings().redis_url,
            nats_url=args.nats_url,
            rules_dir=args.rules_dir,
            data=data,
            profile=args.profile,
        )
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
