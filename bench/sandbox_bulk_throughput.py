"""Measure a 10,000-member sandbox payer's bulk side: $bulk-member-match and Group export.

Run: .venv/bin/python bench/sandbox_bulk_throughput.py [--members 10000] [--export-members 1000]

Reports $bulk-member-match throughput (members/s, from kick-off to the completed manifest,
the request upload included), then a $davinci-data-export (payertopayer) of a matched Group
of --export-members members in resources/s (kick-off to manifest; downloading the files
is timed apart), and the sandbox's resident memory before and after the export.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.sandbox.harness import (
    BULK_SCOPES,
    PAYER_TO_PAYER,
    BackendClient,
    bulk_match_body,
    bulk_result,
    current_consent,
    kick_off,
    manifest_resources,
    member_bundle,
    ndjson_lines,
    running_sandbox,
)

NPI = "1888888882"


def resident_mib(pid: int) -> float:
    """Return the resident set size of process pid in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--export-members", type=int, default=1_000)
    args = parser.parse_args()

    with running_sandbox("Bench Plan", "--members", str(args.members), "--seed", "bench") as payer:
        # One of the duplicate-enrollment twins only: the other is the same member again (422).
        members = [m for m in payer.member_list()["members"] if m["patient_id"] != "dup1b"]
        consent = current_consent(recipient_npi=NPI)
        body = bulk_match_body([member_bundle(m, consent=consent) for m in members])
        size_mib = len(json.dumps(body)) / 2**20
        client = BackendClient(payer, NPI).register()
        with client.http(BULK_SCOPES) as http:
            http.timeout = 600
            t0 = time.monotonic()
            accepted = kick_off(http, "/Group/$bulk-member-match", body=body)
            accepted_s = time.monotonic() - t0
            manifest = bulk_result(http, accepted)
            match_s = time.monotonic() - t0
            groups = {g["code"]["coding"][0]["code"]: g for g in manifest_resources(http, manifest)}
            matched = groups["match"]
            print(
                f"$bulk-member-match: {len(members)} members ({size_mib:.1f} MiB request) in "
                f"{match_s:.2f} s = {len(members) / match_s:,.0f} members/s "
                f"(202 after {accepted_s:.2f} s; "
                + ", ".join(f"{code} {len(g['member'])}" for code, g in groups.items())
                + ")"
            )

            subset = bulk_match_body(
                [member_bundle(m, consent=consent) for m in members[3 : 3 + args.export_members]]
            )
            sub_manifest = bulk_result(
                http, kick_off(http, "/Group/$bulk-member-match", body=subset)
            )
            (group,) = [
                g
                for g in manifest_resources(http, sub_manifest)
                if g["code"]["coding"][0]["code"] == "match"
            ]
            before = resident_mib(payer.process.pid)
            t0 = time.monotonic()
            export = bulk_result(
                http,
                kick_off(
                    http,
                    f"/Group/{group['id']}/$davinci-data-export",
                    params={"exportType": PAYER_TO_PAYER},
                ),
            )
            export_s = time.monotonic() - t0
            after = resident_mib(payer.process.pid)
            total = sum(entry["count"] for entry in export["output"])
            t0 = time.monotonic()
            lines = sum(len(ndjson_lines(http, entry["url"])) for entry in export["output"])
            download_s = time.monotonic() - t0
            print(
                f"$davinci-data-export (payertopayer): {len(group['member'])} members, {total:,} "
                f"resources in {export_s:.2f} s = {total / export_s:,.0f} resources/s; "
                f"download {lines:,} lines in {download_s:.2f} s = {lines / download_s:,.0f} lines/s"
            )
            print(
                f"sandbox resident memory: {before:.0f} MiB before the export, {after:.0f} MiB after "
                f"(matched group of {len(matched['member'])} members held)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
