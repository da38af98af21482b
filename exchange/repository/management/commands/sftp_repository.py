"""``python manage.py sftp_repository --host 127.0.0.1 --port 2222``: serve the SFTP repository."""

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from exchange.repository.host_key import repository_host_key_load_or_create
from exchange.repository.server import (
    repository_server_release_database,
    repository_server_start,
)


class Command(BaseCommand):
    help = "Serve the hub's SFTP repository, from which payers' systems collect delivered files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument(
            "--port",
            type=int,
            default=settings.SFTP_REPOSITORY_PUBLIC_PORT,
            help="port to listen on",
        )

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        asyncio.run(self._serve(host, port))

    async def _serve(self, host: str, port: int) -> None:
        try:
            host_key = repository_host_key_load_or_create()
        except PermissionError as exc:
            raise CommandError(str(exc)) from None
        # Handlers first: a SIGTERM that arrives as soon as the port answers must still
        # stop the server cleanly.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        acceptor = await repository_server_start(host=host, port=port, host_key=host_key)
        self.stdout.write(
            f"SFTP repository listening on {host}:{port} "
            f"(host key {host_key.get_fingerprint('sha256')}, files in "
            f"{settings.SFTP_REPOSITORY_DIR})",
        )
        self.stdout.flush()
        await stop.wait()
        acceptor.close()
        await acceptor.wait_closed()
        await repository_server_release_database()
