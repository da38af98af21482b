"""Hold the one sandbox payer this process serves: configuration, data and state."""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.auth.authorization_code import CodeStore
from sandbox.auth.clients import Client, ClientRegistry
from sandbox.auth.keys import SigningKey
from sandbox.auth.tokens import TokenStore
from sandbox.config import SandboxConfig
from sandbox.consent_subscriptions.hub import HubClient
from sandbox.consent_subscriptions.subscriber import ConsentSubscriber
from sandbox.data.codes import ACT_CODE, SENSITIVE_ACT_CODES
from sandbox.data.directory import Directory, build_directory
from sandbox.data.generator import later_visit_resources, member_resources
from sandbox.data.population import Member, Population
from sandbox.faults import FaultDice
from sandbox.fhir.bulk_jobs import BulkJobStore
from sandbox.fhir.consents import ConsentStore
from sandbox.fhir.groups import GroupStore
from sandbox.fhir.throttle import MatchThrottle
from sandbox.organizations import PayerIdentity, payer_identity

Resource = dict[str, Any]
MATCH_WINDOW_S = 15 * 60
HISTORY_CACHE_SIZE = 256


def is_sensitive(resource: Resource) -> bool:
    """Return whether resource carries a v3-ActCode sensitivity label in meta.security."""
    for label in resource.get("meta", {}).get("security", []):
        if label.get("system") == ACT_CODE and label.get("code") in SENSITIVE_ACT_CODES:
            return True
    return False


def _references(node: Any, found: set[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                kind, _, rid = value.partition("/")
                if kind in ("Practitioner", "Organization"):
                    found.add((kind, rid))
            else:
                _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)


@dataclass(frozen=True)
class MemberRecord:
    """A member's generated resources, indexed, with the directory entries they cite."""

    member: Member
    resources: tuple[Resource, ...]
    by_key: dict[tuple[str, str], Resource]
    cited_all: tuple[tuple[str, str], ...]
    cited_regular: tuple[tuple[str, str], ...]

    def visible(self, *, withhold_sensitive: bool) -> list[Resource]:
        """Return the member's resources, without the sensitive ones if asked."""
        if not withhold_sensitive:
            return list(self.resources)
        return [r for r in self.resources if not is_sensitive(r)]


def _bulk_directory(data_dir: Path | None) -> Path:
    """Return an empty directory for bulk files, removed when the process exits.

    Bulk jobs live in memory, so files a previous run left in --data-dir are stale.
    """
    if data_dir is None:
        directory = Path(tempfile.mkdtemp(prefix="sandbox-bulk-"))
    else:
        directory = data_dir / "bulk"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


class UnknownLargeMember(ValueError):
    """--large-member names a username no member of this sandbox signs in with."""


class Sandbox:
    """The state of one sandbox payer; every view reaches it through current()."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.identity: PayerIdentity = payer_identity(
            config.name, npi=config.npi, payer_id=config.payer_id
        )
        self.population = Population(
            identity=self.identity, seed=config.seed, size=config.members, as_of=config.as_of
        )
        unknown = [u for u, _ in config.large_members if self.population.by_username(u) is None]
        if unknown:
            raise UnknownLargeMember(
                f"--large-member: no member of this sandbox signs in as {', '.join(unknown)}"
            )
        self.directory: Directory = build_directory(self.identity)
        self.signing_key = SigningKey.load_or_create(config.data_dir)
        self.clients = ClientRegistry(config.data_dir)
        self.clients.add(
            Client(
                client_id=config.oidc_client_id,
                client_secret=config.oidc_client_secret,
                client_name="configured OpenID Connect client",
                grant_types=["authorization_code", "refresh_token"],
                token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
                redirect_uris=list(config.redirect_uris),
            )
        )
        self.tokens = TokenStore()
        self.codes = CodeStore()
        self.consents = ConsentStore(config.data_dir)
        # Its own identity as a client of the hub, apart from the IdP's id_token key.
        self.client_key = SigningKey.load_or_create(
            config.data_dir, filename="client-key.pem", algorithm="RS384"
        )
        self.consent_subscriber = ConsentSubscriber(
            client=(
                HubClient(client_id=config.hub_client_id, key=self.client_key)
                if config.hub_client_id
                else None
            ),
            consents=self.consents,
            endpoint=config.consent_notification_url,
            data_dir=config.data_dir,
        )
        self.match_throttle = MatchThrottle(limit=config.match_lockout, window_s=MATCH_WINDOW_S)
        self.fault_dice = FaultDice(config.faults, config.seed)
        self.groups = GroupStore()
        self.bulk_jobs = BulkJobStore(
            _bulk_directory(config.data_dir),
            file_ttl_s=config.bulk_file_ttl_s,
            corrupts_file=self.fault_dice.corrupts_next_file,
        )
        # Care given since the record was generated (``visit_add``), per patient id.
        self.later_visits: dict[str, list[Resource]] = {}
        self._visits_lock = threading.Lock()
        self.record = functools.lru_cache(maxsize=HISTORY_CACHE_SIZE)(self.build_record)
        # Operations a demo or test withdrew at run time (``POST /sandbox/operations/<name>``):
        # gone from the CapabilityStatement and refused, as when a holder's server is changed.
        self.withdrawn_operations: set[str] = set()

    def today(self) -> dt.date:
        """Return the sandbox's today: --as-of when given, else the UTC date."""
        return self.config.as_of

    def build_record(self, patient_id: str) -> MemberRecord | None:
        """Generate the record of patient_id afresh (record() is the cached way)."""
        member = self.population.by_patient_id(patient_id)
        if member is None:
            return None
        resources = member_resources(
            identity=self.identity,
            member=member,
            seed=self.config.seed,
            as_of=self.config.as_of,
            care_factor=self.config.care_factor(member.username),
        ) + self.later_visits.get(patient_id, [])
        cited_all: set[tuple[str, str]] = set()
        cited_regular: set[tuple[str, str]] = set()
        for resource in resources:
            found: set[tuple[str, str]] = set()
            _references(resource, found)
            cited_all |= found
            if not is_sensitive(resource):
                cited_regular |= found
        return MemberRecord(
            member=member,
            resources=tuple(resources),
            by_key={(r["resourceType"], r["id"]): r for r in resources},
            cited_all=tuple(sorted(cited_all)),
            cited_regular=tuple(sorted(cited_regular)),
        )

    def visit_add(self, member: Member) -> list[Resource]:
        """Give the member an office visit today (the sandbox's --as-of day), last updated
        now: the record changes as a real holder's does between two pulls."""
        with self._visits_lock:
            visits = self.later_visits.setdefault(member.patient_id, [])
            number = 1 + sum(r["resourceType"] == "Encounter" for r in visits)
            added = later_visit_resources(
                identity=self.identity,
                member=member,
                seed=self.config.seed,
                day=self.config.as_of,
                number=number,
                updated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            visits.extend(added)
            self.record.cache_clear()
        return added


_current: Sandbox | None = None


def install(sandbox: Sandbox) -> None:
    """Make sandbox the one this process serves."""
    global _current
    _current = sandbox


def current() -> Sandbox:
    """Return the sandbox this process serves."""
    if _current is None:
        raise RuntimeError("no sandbox installed; start it with python -m sandbox")
    return _current
