"""``python manage.py sftp_repository_key --payer SLUG --label TEXT --public-key-file PATH``.

Registers a system's public key for a payer's repository folder from the command line
(operators, and ``make demo``); registering a key that is already there changes nothing.
"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.repository.selectors import repository_key_registered
from exchange.repository.services import repository_key_register
from hub.models import Payer
from hub.ssh_keys import SshKeyError, parse_public_key_line, sha256_fingerprint


class Command(BaseCommand):
    help = "Register an SSH public key with which a payer's system collects from the repository."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--payer", required=True, help="the payer's slug (the SSH user name)")
        parser.add_argument("--label", required=True, help="which system holds the key")
        parser.add_argument("--public-key-file", required=True, type=Path)

    def handle(self, *args: Any, payer: str, label: str, public_key_file: Path, **_: Any) -> None:
        tenant = Payer.objects.filter(slug=payer).first()
        if tenant is None:
            raise CommandError(f"no payer with the slug {payer!r}")
        try:
            line = public_key_file.read_text(encoding="utf-8").strip()
            fingerprint = sha256_fingerprint(parse_public_key_line(line))
        except OSError as exc:
            raise CommandError(f"cannot read {public_key_file}: {exc.strerror}") from None
        except SshKeyError as exc:
            raise CommandError(f"{public_key_file}: {exc}") from None
        if repository_key_registered(payer=tenant, fingerprint=fingerprint) is not None:
            self.stdout.write(f"{fingerprint} is already registered for {payer}.")
            return
        repository_key_register(
            payer=tenant, label=label, public_key=line, allowed_sources=[], expires_at=None,
            created_by=None,
        )  # fmt: skip
        self.stdout.write(f"Registered {fingerprint} for {payer} as {label!r}.")
