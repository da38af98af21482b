"""Parse the command line into the immutable configuration of one sandbox payer."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.faults import FaultPlan, parse_faults

DEFAULT_MEMBERS = 50
DEFAULT_EXPORT_TTL_S = 3600
DEFAULT_OIDC_CLIENT_ID = "hub"
DEFAULT_OIDC_CLIENT_SECRET = "hub-demo-secret"  # noqa: S105 - documented demo credential
REDIRECT_URIS_ENV = "SANDBOX_REDIRECT_URIS"
HUB_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
# --large-member: at 1,000 a record holds about 300,000 resources (some 650 MB of JSON).
MAX_CARE_FACTOR = 1000


@dataclass(frozen=True)
class SandboxConfig:
    """Everything one sandbox payer is started with."""

    name: str
    port: int
    members: int = DEFAULT_MEMBERS
    seed: str = "0"
    faults: FaultPlan = field(default_factory=FaultPlan)
    data_dir: Path | None = None
    as_of: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    peers: tuple[str, ...] = ()
    can_segment: bool = True
    match_lockout: int = 5
    export_ttl_s: float = DEFAULT_EXPORT_TTL_S
    oidc_client_id: str = DEFAULT_OIDC_CLIENT_ID
    oidc_client_secret: str = DEFAULT_OIDC_CLIENT_SECRET
    redirect_uris: tuple[str, ...] = ()
    npi: str | None = None
    payer_id: str | None = None
    hub_client_id: str | None = None
    # (username, care factor) of members whose yearly care repeats that many times.
    large_members: tuple[tuple[str, int], ...] = ()
    verbose: bool = False
    # HTTPS: the server's certificate chain and key (PEM); client_ca makes it a holder that
    # requires mutual TLS, like the Connectathon one (PDex seed 002), accepting only client
    # certificates that CA signed.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None

    def care_factor(self, username: str) -> int:
        """Return how many times a year's ordinary care repeats for username (1 unless large)."""
        return dict(self.large_members).get(username, 1)

    @property
    def bulk_file_ttl_s(self) -> float:
        """Return how long bulk output files live: the export-ttl fault, else --export-ttl."""
        ttl = self.faults.export_ttl_s
        return ttl if ttl is not None else self.export_ttl_s

    @property
    def base_url(self) -> str:
        """Return the origin every URL of this sandbox starts with."""
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def fhir_base(self) -> str:
        """Return the FHIR base URL."""
        return f"{self.base_url}/fhir"

    @property
    def token_url(self) -> str:
        """Return the SMART token endpoint (also the `aud` of client assertions)."""
        return f"{self.base_url}/auth/token"

    @property
    def client_jwks_url(self) -> str:
        """Return where the public key of its client assertions at the hub is published."""
        return f"{self.base_url}/sandbox/client-jwks.json"

    @property
    def consent_notification_url(self) -> str:
        """Return the rest-hook endpoint its Subscriptions at the hub name."""
        return f"{self.base_url}/sandbox/consent-notifications"

    @property
    def issuer(self) -> str:
        """Return the OpenID Connect issuer."""
        return f"{self.base_url}/oidc"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def _client_id(text: str) -> str:
    if not HUB_CLIENT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not a hub client id (a payer slug: letters, digits, '-' and '_'): {text!r}"
        )
    return text


def _large_member(text: str) -> tuple[str, int]:
    username, equals, factor = text.partition("=")
    if not equals or not username.strip():
        raise argparse.ArgumentTypeError(f"not USERNAME=FACTOR: {text!r}")
    try:
        value = int(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the factor of {text!r} is not a whole number") from None
    if not 1 <= value <= MAX_CARE_FACTOR:
        raise argparse.ArgumentTypeError(
            f"the factor of {text!r} must be between 1 and {MAX_CARE_FACTOR}"
        )
    return username.strip().lower(), value


def _fault_plan(text: str) -> FaultPlan:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of `python -m sandbox`."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Serve one sandbox payer (FHIR data holder and identity provider) on 127.0.0.1.",
    )
    parser.add_argument("--name", required=True, help="payer name; identifiers derive from it")
    parser.add_argument("--port", required=True, type=int, help="TCP port on 127.0.0.1")
    parser.add_argument("--members", type=_positive_int, default=DEFAULT_MEMBERS)
    parser.add_argument("--seed", default="0", help="population seed; equal seeds share people")
    parser.add_argument("--faults", type=_fault_plan, default=FaultPlan(), help="see README")
    parser.add_argument("--data-dir", type=Path, help="keep signing key, clients and consents here")
    parser.add_argument("--as-of", type=_iso_date, help="the sandbox's today (default: UTC today)")
    parser.add_argument(
        "--peer", action="append", default=[], help="another sandbox's name in the same population"
    )
    parser.add_argument(
        "--no-segmentation",
        action="store_true",
        help="cannot withhold sensitive data: refuse #regular consents",
    )
    parser.add_argument("--match-lockout", type=_positive_int, default=5)
    parser.add_argument(
        "--export-ttl",
        type=_positive_int,
        default=DEFAULT_EXPORT_TTL_S,
        help="seconds bulk output files stay downloadable after a job completes",
    )
    parser.add_argument("--oidc-client-id", default=DEFAULT_OIDC_CLIENT_ID)
    parser.add_argument("--oidc-client-secret", default=DEFAULT_OIDC_CLIENT_SECRET)
    parser.add_argument("--redirect-uri", action="append", default=[])
    parser.add_argument("--npi", help="override the NPI derived from the name")
    parser.add_argument("--payer-id", help="override the payer id derived from the name")
    parser.add_argument(
        "--hub-client-id",
        type=_client_id,
        help="this payer's client id (slug) at the hub: subscribe to the hub Consents it is named in",
    )
    parser.add_argument(
        "--large-member",
        type=_large_member,
        action="append",
        default=[],
        metavar="USERNAME=FACTOR",
        help="repeat a year's ordinary care FACTOR times in this member's record (about 300 "
        "resources per factor for patricia.person): one member with a very large record",
    )
    parser.add_argument(
        "--tls-cert",
        type=Path,
        help="serve HTTPS with this PEM certificate (chain); needs --tls-key",
    )
    parser.add_argument("--tls-key", type=Path, help="the PEM private key of --tls-cert")
    parser.add_argument(
        "--client-ca",
        type=Path,
        help="require a client certificate signed by this PEM CA (mutual TLS); needs --tls-cert",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def config_from_args(argv: list[str] | None = None) -> SandboxConfig:
    """Parse argv (and SANDBOX_REDIRECT_URIS) into a SandboxConfig."""
    parser = build_parser()
    args = parser.parse_args(argv)
    large_usernames = [username for username, _ in args.large_member]
    if len(set(large_usernames)) < len(large_usernames):
        parser.error("--large-member: a username is given more than once")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together: give both to serve HTTPS")
    if args.client_ca and not args.tls_cert:
        parser.error("--client-ca needs --tls-cert and --tls-key: mutual TLS is served over HTTPS")
    for flag, path in (
        ("--tls-cert", args.tls_cert),
        ("--tls-key", args.tls_key),
        ("--client-ca", args.client_ca),
    ):
        if path is not None and not path.is_file():
            parser.error(f"{flag}: no such file: {path}")
    env_uris = [u for u in os.environ.get(REDIRECT_URIS_ENV, "").split(",") if u.strip()]
    as_of = args.as_of or dt.datetime.now(dt.UTC).date()
    return SandboxConfig(
        name=args.name,
        port=args.port,
        members=args.members,
        seed=args.seed,
        faults=args.faults,
        data_dir=args.data_dir,
        as_of=as_of,
        peers=tuple(args.peer),
        can_segment=not args.no_segmentation,
        match_lockout=args.match_lockout,
        export_ttl_s=float(args.export_ttl),
        oidc_client_id=args.oidc_client_id,
        oidc_client_secret=args.oidc_client_secret,
        redirect_uris=tuple(args.redirect_uri) + tuple(u.strip() for u in env_uris),
        npi=args.npi,
        payer_id=args.payer_id,
        hub_client_id=args.hub_client_id,
        large_members=tuple(args.large_member),
        verbose=args.verbose,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
    )
