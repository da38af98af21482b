"""Create a hub operator, set a password, or issue an authenticator app — from the hub's shell.

    manage.py operator_account olga --email olga@hub.example     # new: asks for a password
    manage.py operator_account olga --new-authenticator          # lost phone: a new one
    manage.py operator_account olga --set-password               # forgotten password

A new operator gets an authenticator at once: the command prints the QR code to scan (and
the key to type in), which is shown this once only. Without it the console cannot be
entered (operator_console/site.py).
"""

import getpass
import sys
from typing import Any, TextIO, cast

import segno
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hub.operator_accounts import (
    OperatorAccountRefused,
    authenticator_setup_uri,
    operator_account_save,
    operator_authenticator_issue,
    operator_find,
)
from hub.totp_secrets import totp_secret_base32


class Command(BaseCommand):
    help = "Create a hub operator, set their password, or issue their authenticator app."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--set-password", action="store_true")
        parser.add_argument("--new-authenticator", action="store_true")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input (for scripts)",
        )

    def _password(self, options: dict[str, Any]) -> str:
        if options["password_stdin"]:
            return sys.stdin.readline().rstrip("\n")
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("The two passwords differ; nothing was changed.")
        return first

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        try:
            existing = operator_find(username=username)
            if existing is None or options["set_password"]:
                operator = operator_account_save(
                    username=username, password=self._password(options), email=options["email"]
                )
                self.stdout.write(f"Operator {username} saved.")
            else:
                operator = existing
            if existing is None or options["new_authenticator"]:
                device = operator_authenticator_issue(operator=operator)
                uri = authenticator_setup_uri(device)
                self.stdout.write(
                    "Scan this with the operator's authenticator app (shown this once only):"
                )
                # The command's own output (OutputWrapper writes like a text stream).
                segno.make(uri, error="m").terminal(out=cast(TextIO, self.stdout), compact=True)
                self.stdout.write(f"Or type in the key: {totp_secret_base32(device.bin_key)}")
                self.stdout.write(f"Setup URI: {uri}")
            elif not options["set_password"]:
                self.stdout.write(
                    f"{username} exists; say --set-password or --new-authenticator to change it."
                )
        except OperatorAccountRefused as exc:
            raise CommandError(str(exc)) from None
