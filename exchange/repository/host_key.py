"""The repository server's host key: generated once, kept in a file only root can read.

Payers' systems pin this key (their ``known_hosts``); the plan-admin portal shows its
fingerprint so an administrator can confirm it out of band before the first download.
"""

import os
from pathlib import Path

import asyncssh
from django.conf import settings


def repository_host_key_load_or_create(*, path: Path | None = None) -> asyncssh.SSHKey:
    """Return the host key stored at ``path``; generate an ed25519 key there (mode 600) if absent."""
    path = path or settings.SFTP_REPOSITORY_HOST_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        # O_EXCL: two servers starting at once must not overwrite each other's fresh key.
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return asyncssh.read_private_key(str(path))
        with os.fdopen(descriptor, "wb") as file:
            file.write(key.export_private_key())
        return key
    if path.stat().st_mode & 0o077:
        raise PermissionError(
            f"{path} is readable by other users; run `chmod 600 {path}` (it is the server's secret key)"
        )
    return asyncssh.read_private_key(str(path))


def _stored_key(path: Path | None) -> asyncssh.SSHKey | None:
    path = path or settings.SFTP_REPOSITORY_HOST_KEY_FILE
    return asyncssh.read_private_key(str(path)) if path.exists() else None


def repository_host_key_line(*, path: Path | None = None) -> str | None:
    """Return the host key's OpenSSH public key line, or None before the server first started."""
    key = _stored_key(path)
    return None if key is None else key.export_public_key().decode("ascii").strip()


def repository_host_key_fingerprint(*, path: Path | None = None) -> str | None:
    """Return the host key's SHA256 fingerprint as OpenSSH prints it, or None before first start."""
    key = _stored_key(path)
    return None if key is None else str(key.get_fingerprint("sha256"))
