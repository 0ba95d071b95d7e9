"""Measure how often a notifier killed during deliveries makes a receiver see a duplicate.

    .venv/bin/python -m tests.integration.kill_notifier --kills 20 --alerts 20

Starts a stack of its own (``ack_wait`` 3 s), then per round: fires ``--alerts`` alerts, kills
the notifier with ``kill -9`` at a random moment while their webhooks are being delivered
(just after a random one of them was answered 2xx, plus up to 20 ms), restarts it and waits
until everything is delivered. It counts, per idempotency key, the requests answered 2xx: one
is right, none is lost, more is a duplicate. Not part of ``make test``: it takes minutes.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from goalwatch.dev.stack import Stack, StackSettings
from tests.integration.conftest import REPO, WEBHOOK_SECRET, WebhookCall, WebhookReceiver
from tests.integration.helpers import await_drained, post_events, rework_event, unique


def main() -> None:
    """Run the rounds and print one line per round and the totals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="rounds, one kill each")
    parser.add_argument("--alerts", type=int, default=20, help="alerts fired per round")
    args = parser.parse_args()
    receiver = WebhookReceiver()
    with tempfile.TemporaryDirectory() as state:
        stack = Stack(
            settings=StackSettings.on_free_ports(Path(state), REPO / "rules"),
            env={
                "GOALWATCH_WEBHOOK_URL": receiver.url,
                "GOALWATCH_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GOALWATCH_NOTIFIER_ACK_WAIT": "3",
            },
        )
        stack.start()
        try:
            totals: Counter[str] = Counter()
            for round_number in range(1, args.kills + 1):
                counts = _round(stack, receiver, alerts=args.alerts)
                totals.update(counts)
                print(f"round {round_number}: {dict(counts)}", flush=True)
            print(f"total over {args.kills} kills: {dict(totals)}", flush=True)
        finally:
            stack.stop()
            receiver.close()


def _round(stack: Stack, receiver: WebhookReceiver, *, alerts: int) -> Counter[str]:
    subjects = [unique("kill") for _ in range(alerts)]
    wanted = set(subjects)
    kill_after = random.randint(1, alerts)
    killed = threading.Event()

    def answered() -> int:
        return sum(
            1 for d in list(receiver.deliveries) if d.status == 200 and _subject(d) in wanted
        )

    def killer() -> None:
        receiver.wait_for(lambda _: answered() >= kill_after, timeout=120)
        time.sleep(random.uniform(0, 0.02))
        stack.kill("notifier")
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with httpx.Client(timeout=10.0) as http:
        people = [{"id": s, "name": s} for s in subjects]
        http.post(f"{stack.settings.url('goals')}/v1/people", json=people).raise_for_status()
        events = [rework_event(s, day, 0.4) for s in subjects for day in (1, 2, 3)]
        post_events(http, stack.settings.url("ingestion"), events)
    killed.wait(timeout=120)
    thread.join()
    stack.restart("notifier")
    receiver.wait_for(
        lambda calls: {_subject(c) for c in calls if c.status == 200} >= wanted, timeout=120
    )
    await_drained(stack.settings.nats_url, timeout=120)
    per_key = Counter(
        d.headers.get("idempotency-key")
        for d in list(receiver.deliveries)
        if d.status == 200 and _subject(d) in wanted
    )
    counts: Counter[str] = Counter(delivered=len(per_key), kills=1)
    counts["duplicated"] = sum(n - 1 for n in per_key.values())
    counts["lost"] = len(wanted - {_subject(d) for d in receiver.deliveries if d.status == 200})
    return counts


def _subject(call: WebhookCall) -> str:
    return str(call.json["subject"]["id"])


if __name__ == "__main__":
    main()
