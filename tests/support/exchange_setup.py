"""Two payers set up for a member exchange with sandbox payers, and the oracle of a delivery.

North (the new payer) has its members sign in at a sandbox's identity provider and takes
deliveries on the real sshd of ``tests/support/sshd.py``; South (the former payer) holds
the records behind a sandbox's FHIR server. The oracle reads the former payer's record of
the member straight from a sandbox (never through the hub) and checks a delivered folder
against it: the manifest's sha256 and sizes, nothing outside the record, and what the rule
keeps out really kept out (SPEC.md "The rule", "Consent", "Non-financial claims", "Prior
authorizations").
"""

import datetime as dt
import hashlib
import json
from collections.abc import Collection
from datetime import date
from pathlib import Path
from typing import Any

from hub.models import (
    DeliveryMode,
    FhirEndpoint,
    IdentityProvider,
    Payer,
    SftpDestination,
    User,
)
from tests.conftest import Tenant
from tests.sandbox.harness import (
    SEED,
    BackendClient,
    RunningSandbox,
    current_consent,
    everything,
    matched_patient,
)
from tests.support.sshd import SftpServer

# The sandbox's showcase member (sandbox/README.md "Accounts and the member list"): the HRex
# example member, with sensitive data and prior authorizations in every status.
SHOWCASE_MEMBER = "patricia.person"
SHOWCASE_CARD = "DH10001235"
# The personas' NPIs (tests/conftest.py); a former payer's sandbox carries South's.
NORTH_NPI = "1234567893"
SOUTH_NPI = "1245319599"
# sandbox arguments of South's FHIR server; two sandboxes started with them hold the same data.
SOUTH_SANDBOX_ARGS = ("--seed", SEED, "--npi", SOUTH_NPI)
# SPEC.md "Consent": labels a #regular consent withholds.
SENSITIVE_CODES = frozenset({"ETH", "HIV", "PSY", "SDV", "SEX", "STD", "42CFRPart2"})
FINANCIAL_EOB_FIELDS = frozenset({"payment", "total", "benefitBalance"})

Key = tuple[str, str]


def exchange_payers_configure(
    *,
    new: Tenant,
    former: Tenant,
    former_fhir_base: str,
    sftp_server: SftpServer,
    payer_to_payer: bool,
    identity_provider: RunningSandbox | None = None,
) -> None:
    """Set up ``new`` to receive pushed deliveries on ``sftp_server`` and ``former`` to hold
    records at ``former_fhir_base``, reached payer-to-payer ($member-match) or by the member's
    own sign-in there. ``identity_provider`` is where ``new``'s members sign in (browser tests)."""
    if identity_provider is not None:
        IdentityProvider.objects.create(
            payer=new.payer,
            issuer=f"{identity_provider.base}/oidc",
            client_id="hub",
            client_secret="hub-demo-secret",
        )
    sftp_push_configure(payer=new.payer, sftp_server=sftp_server)
    FhirEndpoint.objects.create(
        payer=former.payer,
        base_url=former_fhir_base,
        offers_backend_services=payer_to_payer,
        offers_member_authorization=not payer_to_payer,
    )


def sftp_push_configure(*, payer: Payer, sftp_server: SftpServer) -> SftpDestination:
    """Have ``payer`` take its deliveries pushed to ``sftp_server``'s ``incoming`` folder,
    signing in with the server's client key and pinning its host key."""
    payer.delivery_mode = DeliveryMode.PUSH_SFTP
    payer.save()
    return SftpDestination.objects.create(
        payer=payer,
        host="127.0.0.1",
        port=sftp_server.port,
        username=sftp_server.username,
        private_key=sftp_server.client_key_text,
        host_key=sftp_server.host_key_line,
        remote_directory="incoming",
    )


def sandbox_member(sandbox: RunningSandbox, username: str) -> dict[str, Any]:
    """Return the entry of ``username`` in the sandbox's member list."""
    return next(m for m in sandbox.member_list()["members"] if m["username"] == username)


def member_demographics_set(*, user: User, member: dict[str, Any]) -> None:
    """Give ``user`` the demographics of ``member`` of a sandbox's member list, as the new
    payer's identity provider would have (the MemberPatient of $member-match comes from them)."""
    user.first_name = " ".join(member["given"])
    user.last_name = member["family"]
    user.birth_date = date.fromisoformat(member["birth_date"])
    user.gender = member["gender"]
    user.save()


def sandbox_everything(
    sandbox: RunningSandbox, *, member: dict[str, Any], recipient_npi: str
) -> list[dict[str, Any]]:
    """Return the sandbox's own ``$everything`` of ``member`` for a #sensitive consent to
    ``recipient_npi``, fetched by the test as a client of its own."""
    client = BackendClient(sandbox=sandbox, organization_npi=recipient_npi).register()
    with client.http() as http:
        patient_id = matched_patient(http, member, current_consent(recipient_npi=recipient_npi))
        return everything(http, patient_id, _count="500")


def _labels(resource: dict[str, Any]) -> set[str]:
    return {label.get("code", "") for label in resource.get("meta", {}).get("security", [])}


def delivery_check(
    folder: Path,
    oracle: list[dict[str, Any]],
    *,
    policy: str,
    withheld: Collection[Key] = (),
) -> dict[str, Any]:
    """Check a delivered folder against the former payer's record ``oracle``; return its manifest.

    The folder holds exactly the manifest's files (nothing partial, nothing left over), each
    with the manifest's sha256 and size; every delivered resource is the former payer's (or
    the hub's own Provenance) and within the rule; the recent Encounters the rule lets
    through are all there, except the ``withheld`` ones (quarantined, say), which are not.
    """
    manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert set(listed) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    for name, entry in listed.items():
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert len(data) == entry["size"], name
    bundle = json.loads((folder / "bundle.json").read_text())
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    delivered = [entry["resource"] for entry in bundle["entry"]]
    assert any(r["resourceType"] == "Provenance" for r in delivered)
    delivered_keys = {(r["resourceType"], r["id"]) for r in delivered}
    assert len(delivered_keys) == len(delivered), "a resource was delivered twice"
    oracle_keys = {(r["resourceType"], r["id"]) for r in oracle}
    today = dt.datetime.now(tz=dt.UTC).date()
    five_years_ago = (today - dt.timedelta(days=5 * 365 + 2)).isoformat()
    for resource in delivered:
        key = (resource["resourceType"], resource["id"])
        if resource["resourceType"] == "Provenance" and key not in oracle_keys:
            continue  # the hub's own Provenance of the package
        assert key in oracle_keys, key
        if policy == "regular":
            assert not _labels(resource) & SENSITIVE_CODES, key
        if resource["resourceType"] == "ExplanationOfBenefit":
            assert not FINANCIAL_EOB_FIELDS & set(resource), key
            if resource.get("use") == "preauthorization":
                codes = {c.get("code") for c in resource["type"]["coding"]}
                assert "pharmacy" not in codes, key
            else:
                assert resource["billablePeriod"]["start"] >= five_years_ago, key
        if resource["resourceType"] == "Encounter":
            assert resource["period"]["start"] >= five_years_ago, key
    assert not delivered_keys & set(withheld), "a withheld resource was delivered"
    # Everything the rule lets through is there: recent encounters of the member, at least.
    expected_encounters = {
        ("Encounter", r["id"])
        for r in oracle
        if r["resourceType"] == "Encounter"
        and r["period"]["start"] >= (today - dt.timedelta(days=5 * 365 - 2)).isoformat()
        and not (policy == "regular" and _labels(r) & SENSITIVE_CODES)
    } - set(withheld)
    assert expected_encounters
    assert expected_encounters <= delivered_keys
    assert any(r["resourceType"] == "Patient" for r in delivered)
    return manifest
