"""The users of bench/portal_load.py, run by locust in a process of their own.

Importing locust patches the standard library for gevent (sockets, threads, time), which the
hub's own code in the benchmark's process must not run under; so bench/portal_load.py writes
a plan (JSON: where to send what, with which session cookie or access token) and runs this
file on it, once against the hub and once against the bare floor:

    python bench/portal_load_users.py PLAN.json RESULT.json

It starts every user (``fixed_count`` of each kind, as the plan counts them), waits until all
are running, then counts for ``seconds``: per kind of user the requests, their latency
percentiles, the failures and the statuses; the statuses of the whole run (ramp-up and
stop included) too, where no 5xx may hide. The answers to every POSTed opt-in, from the
first user started to the last one stopped, go into the result too, so the benchmark can
check them against the database. Users stop after the request they are making (locust's
``stop_timeout``): no opt-in is cut off between the hub's commit and its answer.
"""

from __future__ import annotations

import html
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import gevent
import orjson
from locust import FastHttpUser, User, between, constant, constant_pacing, events, task
from locust.env import Environment

MEMBER = "member: request status (htmx poll)"
ADMIN = "administrator: request list page"
SYSTEM = "payer system: POST opt-in"
# Every user is running within this many seconds; their requests meanwhile are not counted.
SPAWN_RATE = 50.0
# A user that is mid-request when the time is up gets this long to finish it.
STOP_TIMEOUT = 90.0
# A loaded hub may take seconds to answer; a request is failed only well past that.
NETWORK_TIMEOUT = 60.0

PLAN: dict[str, Any] = {}
# Keyed by the status as text: the result is JSON.
statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)
opt_in_answers: list[dict[str, Any]] = []


@events.request.add_listener
def status_count(name: str, response: Any, **_: Any) -> None:
    """Count each answer's HTTP status (0: no answer) under its kind of request."""
    statuses[name][str(getattr(response, "status_code", 0) or 0)] += 1


# The live part's next poll, as the last copy of it names it (templates/members/_request_live.html).
NEXT_POLL = re.compile(r'hx-get="([^"]+)"')


class Member(FastHttpUser):
    """A member whose request page is open: htmx asks for its live part every 2 s, counted
    from the last answer (templates/members/_request_live.html, ``hx-trigger="every 2s"``),
    at the address the last copy of that part names (it carries the version the page shows;
    while nothing changes the hub answers 204 and the copy stays)."""

    wait_time = constant(2)
    network_timeout = connection_timeout = NETWORK_TIMEOUT

    def on_start(self) -> None:
        member = PLAN["members"].pop()
        self.path = member["path"]
        self.headers = {
            "Cookie": member["cookie"],
            "HX-Request": "true",
            "HX-Current-URL": member["page_url"],
        }

    @task
    def poll(self) -> None:
        response = self.client.get(self.path, headers=self.headers, name=MEMBER)
        following = NEXT_POLL.search(response.text or "") if response.status_code == 200 else None
        if following:
            self.path = html.unescape(following.group(1))


class Administrator(FastHttpUser):
    """A plan administrator paging through the request list, 1 to the last page and round
    again, reading each page for 1-3 s."""

    wait_time = between(1, 3)
    network_timeout = connection_timeout = NETWORK_TIMEOUT

    def on_start(self) -> None:
        admin = PLAN["admins"].pop()
        self.list_path, self.pages = admin["list_path"], admin["pages"]
        self.headers = {"Cookie": admin["cookie"]}
        self.page = 0

    @task
    def next_page(self) -> None:
        self.page = self.page % self.pages + 1
        self.client.get(f"{self.list_path}?page={self.page}", headers=self.headers, name=ADMIN)


class PayerSystem(FastHttpUser):
    """A payer's enrollment system posting one opt-in a second (its own pool of distinct
    members, each with an ``Idempotency-Key`` of its own), with the hub's access token."""

    wait_time = constant_pacing(1)
    network_timeout = connection_timeout = NETWORK_TIMEOUT

    def on_start(self) -> None:
        system = PLAN["systems"].pop()
        self.token, self.posts = system["token"], iter(system["posts"])

    @task
    def post_opt_in(self) -> None:
        post = next(self.posts, None)
        if post is None:
            return  # the pool is sized for the run; an idle system changes no figure
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Idempotency-Key": post["key"],
        }
        response = self.client.post(
            PLAN["opt_ins_path"], data=post["body"].encode(), headers=headers, name=SYSTEM
        )
        answer = orjson.loads(response.content) if response.status_code == 201 else {}
        opt_in_answers.append(
            {"key": post["key"], "status": response.status_code or 0, "id": answer.get("id")}
        )


def run(plan_path: Path, result_path: Path) -> None:
    """Run the plan's users for its ``seconds``; write what they measured to ``result_path``."""
    PLAN.update(orjson.loads(plan_path.read_bytes()))
    kinds: tuple[tuple[type[User], str], ...] = (
        (Member, "members"),
        (Administrator, "admins"),
        (PayerSystem, "systems"),
    )
    for user_class, key in kinds:
        user_class.fixed_count = len(PLAN[key])
    user_classes = [user_class for user_class, _ in kinds if user_class.fixed_count]
    # locust's own events, where status_count listens (an Environment makes new ones).
    environment = Environment(
        user_classes=user_classes, host=PLAN["host"], stop_timeout=STOP_TIMEOUT, events=events
    )
    runner = environment.create_local_runner()
    runner.start(sum(c.fixed_count for c in user_classes), spawn_rate=SPAWN_RATE)
    assert runner.spawning_greenlet is not None
    runner.spawning_greenlet.join()
    environment.stats.reset_all()
    before = {name: Counter(counts) for name, counts in statuses.items()}
    gevent.sleep(PLAN["seconds"])
    counted = {
        name: {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "p50": entry.get_response_time_percentile(0.50),
            "p95": entry.get_response_time_percentile(0.95),
            "p99": entry.get_response_time_percentile(0.99),
            "max": entry.max_response_time,
            "statuses": dict(statuses[name] - before.get(name, Counter())),
        }
        for (name, _method), entry in environment.stats.entries.items()
    }
    runner.stop()
    runner.quit()
    result = {
        "seconds": PLAN["seconds"],
        "kinds": counted,
        # From the first user started to the last stopped, not only within the window.
        "all_statuses": {name: dict(counts) for name, counts in statuses.items()},
        "opt_ins": opt_in_answers,
    }
    result_path.write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]))
