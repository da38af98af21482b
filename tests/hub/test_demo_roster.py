"""`make demo` writes a roster of a sandbox's members that the cohort page accepts as is."""

from pathlib import Path

from django.utils import timezone

from exchange.bulk.roster import roster_read
from hub.demo import demo_roster_write
from tests.conftest import Tenant
from tests.sandbox.harness import FORMER, running_sandbox
from tests.support.exchange_setup import SOUTH_SANDBOX_ARGS


def test_the_demo_roster_reads_back_as_a_valid_roster(
    north: Tenant, south: Tenant, tmp_path: Path
) -> None:
    destination = tmp_path / "cohort-roster.csv"
    with running_sandbox(FORMER, *SOUTH_SANDBOX_ARGS, "--members", "12") as sandbox:
        written = demo_roster_write(
            members_url=f"{sandbox.base}/sandbox/members.json",
            former_npi=south.payer.npi,
            destination=destination,
            count=5,
        )
        cards = {m["card_number"] for m in sandbox.member_list()["members"]}

    roster = roster_read(
        data=destination.read_bytes(),
        filename=destination.name,
        new_payer=north.payer,
        now=timezone.now(),
    )
    assert written == len(roster.members) == 5
    assert {m.former_payer for m in roster.members} == {south.payer}
    assert {m.former_member_id for m in roster.members} <= cards
