"""Measure screening + packaging of one large record: resources/s and the worker's peak memory.

Run, with a hub environment (e.g. ``source /tmp/env-NAME.sh``):
    .venv/bin/python bench/screening_throughput.py [--resources 50000] [--small 5000]

The record is sandbox-generated (sandbox/data/generator.py: claims of the five CARIN types,
PDex prior authorizations, US Core clinical data, sensitive-labelled visits), written as
retrieval writes it: encrypted NDJSON staging pages of 500 resources. Screening (#regular)
and packaging then run in a fresh child process, so its peak RSS is theirs alone; a small
record is measured the same way to show the peak does not grow with the record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AS_OF = dt.date(2026, 11, 23)
PAGE_SIZE = 500
REQUEST_ID = 1


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()


def stage(root: Path, target: int) -> int:
    """Write at least ``target`` generated resources as staging pages; return how many."""
    from exchange.payloads.layout import RequestFiles
    from exchange.payloads.storage import LocalPayloadStorage
    from sandbox.data.generator import member_resources
    from sandbox.data.population import Population
    from sandbox.organizations import payer_identity

    storage = LocalPayloadStorage(root)
    files = RequestFiles(REQUEST_ID)
    population = Population(
        identity=payer_identity("Bench Health"), seed="bench", size=target // 150, as_of=AS_OF
    )
    page: list[bytes] = []
    staged = pages = 0
    for member in population.members:
        for item in member_resources(
            identity=population.identity, member=member, seed="bench", as_of=AS_OF
        ):
            page.append(json.dumps(item).encode() + b"\n")
            staged += 1
            if len(page) == PAGE_SIZE:
                pages += 1
                storage.write_bytes(files.staging_page(pages), b"".join(page))
                page = []
        if staged >= target:
            break
    if page:
        storage.write_bytes(files.staging_page(pages + 1), b"".join(page))
    return staged


def measure(root: Path) -> dict[str, float]:
    """Screen and package the staged record (child process); return times and peak RSS."""
    from exchange.packaging import PackageContext, PayerParty, package_build
    from exchange.payloads.storage import LocalPayloadStorage
    from exchange.screening import screening_run

    storage = LocalPayloadStorage(root)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = screening_run(
        request_id=REQUEST_ID, request_date=AS_OF, policy="regular", storage=storage
    )
    screened = time.perf_counter()
    context = PackageContext(
        request_id=REQUEST_ID,
        new_payer=PayerParty(
            "New Health Plan", (("http://hl7.org/fhir/sid/us-npi", "1777777771"),)
        ),
        former_payer=PayerParty(
            "Bench Health", (("http://hl7.org/fhir/sid/us-npi", "1234567893"),)
        ),
        consent_id="bench",
        consent_policy="regular",
        hub_name="Payer-to-payer hub",
    )
    package = package_build(request_id=REQUEST_ID, storage=storage, manifest_context=context)
    packaged = time.perf_counter()
    return {
        "kept": result.kept_total,
        "removed": sum(result.removed.values()),
        "screen_s": screened - started,
        "package_s": packaged - screened,
        "bundle_mib": package.files[0].size / 2**20,
        "baseline_rss_mib": baseline_kib / 1024,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(resources: int) -> None:
    with tempfile.TemporaryDirectory(prefix="screening-bench-") as directory:
        started = time.perf_counter()
        staged = stage(Path(directory), resources)
        print(f"staged {staged:,} resources in {time.perf_counter() - started:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--measure", directory],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        total_s = figures["screen_s"] + figures["package_s"]
        print(
            f"  screening: {figures['screen_s']:.1f} s = {staged / figures['screen_s']:,.0f} resources/s "
            f"({figures['kept']:,.0f} kept, {figures['removed']:,.0f} screened out)\n"
            f"  packaging: {figures['package_s']:.1f} s ({figures['bundle_mib']:.1f} MiB Bundle)\n"
            f"  screening + packaging: {staged / total_s:,.0f} resources/s\n"
            f"  worker peak RSS: {figures['peak_rss_mib']:.0f} MiB "
            f"(after start-up and imports: {figures['baseline_rss_mib']:.0f} MiB)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=5_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _setup_django()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return 0
    for size in (args.small, args.resources):
        print(f"record of about {size:,} resources:")
        run(size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
