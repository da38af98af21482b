"""Measure a 10,000-member sandbox payer: start-up, $member-match and $everything throughput.

Run: .venv/bin/python bench/sandbox_throughput.py [--members 10000] [--sample 300] [--threads 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox.harness import (
    BackendClient,
    current_consent,
    everything,
    matched_patient,
    running_sandbox,
)

NPI = "1777777771"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=300, help="members to match and pull")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--count", default="500", help="$everything _count (page size)")
    args = parser.parse_args()

    started = time.monotonic()
    with running_sandbox("Bench Plan", "--members", str(args.members), "--seed", "bench") as payer:
        ready = time.monotonic() - started
        members = payer.member_list()["members"]
        print(f"start-up with {len(members)} members: {ready:.2f} s (to listening)")
        client = BackendClient(payer, NPI).register()
        sample = members[3 : 3 + args.sample]
        consent = current_consent(recipient_npi=NPI)

        with client.http() as http:
            t0 = time.monotonic()
            patient_ids = [matched_patient(http, m, consent) for m in sample]
            match_s = time.monotonic() - t0
        print(
            f"$member-match: {len(sample)} members in {match_s:.2f} s "
            f"({len(sample) / match_s:.0f} matches/s, sequential)"
        )

        token = client.token()
        local = threading.local()

        def pull(patient_id: str) -> int:
            # One connection pool and one token per thread: measure the server, not TLS set-up.
            if not hasattr(local, "http"):
                local.http = httpx.Client(
                    base_url=payer.fhir, headers={"Authorization": f"Bearer {token}"}, timeout=60
                )
            return len(everything(local.http, patient_id, _count=args.count))

        for threads in sorted({1, args.threads}):
            local = threading.local()
            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=threads) as pool:
                counts = list(pool.map(pull, patient_ids))
            elapsed = time.monotonic() - t0
            total = sum(counts)
            print(
                f"$everything, {threads} client thread(s), _count={args.count}: "
                f"{total} resources from {len(counts)} members in {elapsed:.2f} s = "
                f"{total / elapsed:,.0f} resources/s "
                f"(median {statistics.median(counts):.0f} resources/member)"
            )
        again = time.monotonic()
        pull(patient_ids[0])
        print(f"cached re-pull of one member: {time.monotonic() - again:.3f} s")
        httpx.get(f"{payer.fhir}/metadata")
    return 0


if __name__ == "__main__":
    sys.exit(main())
