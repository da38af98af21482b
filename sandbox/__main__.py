"""Start one sandbox payer: `python -m sandbox --name NAME --port PORT [...]` (see README.md)."""

from __future__ import annotations

import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the payer's data and serve it until interrupted."""
    from sandbox.config import config_from_args

    config = config_from_args(argv)
    # Always this process's own settings, even when a parent (e.g. pytest-django) set others.
    os.environ["DJANGO_SETTINGS_MODULE"] = "sandbox.server_settings"
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application

    from sandbox.runtime import Sandbox, UnknownLargeMember, install
    from sandbox.server import serve, tls_context

    # Exit normally on SIGTERM (how tests and the demo stop a sandbox), so atexit cleanup runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        sandbox = Sandbox(config)
    except UnknownLargeMember as exc:
        print(f"python -m sandbox: error: {exc}", file=sys.stderr)
        return 2
    install(sandbox)
    tls = (
        tls_context(cert=config.tls_cert, key=config.tls_key, client_ca=config.client_ca)
        if config.tls_cert and config.tls_key
        else None
    )
    application = get_wsgi_application()
    print(
        f"sandbox payer {config.name!r}: FHIR {config.fhir_base}, issuer {config.issuer}, "
        f"{len(sandbox.population.members)} members",
        flush=True,
    )
    try:
        serve(application, port=config.port, verbose=config.verbose, tls=tls)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
