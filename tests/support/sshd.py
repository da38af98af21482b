"""A real OpenSSH sshd serving SFTP on a free loopback port, chrooted, for delivery tests.

sshd insists that every component of a chroot path is root-owned and not writable
by others, so the chroot lives under /var/lib (not /tmp, which is world-writable);
the tests therefore run as root, as CI does.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko

from tests.support.net import free_loopback_port, wait_until_listening

SFTP_USER = "hubsftp"
CHROOT_PARENT = Path("/var/lib/payer-hub-tests")


@dataclass
class SftpServer:
    port: int
    username: str
    client_key: paramiko.Ed25519Key
    # The same private key as OpenSSH text, as a plan administrator would paste it.
    client_key_text: str
    host_key_line: str
    chroot: Path

    @property
    def incoming(self) -> Path:
        """The folder the account may write to (the chroot itself is root's)."""
        return self.chroot / "incoming"


def _ensure_account() -> None:
    if subprocess.run(["id", SFTP_USER], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SFTP_USER],
            check=True,
        )
    # A locked account ("!") is refused even for key sign-in; "*" means no password at all.
    subprocess.run(["usermod", "-p", "*", SFTP_USER], check=True)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextmanager
def running_sshd() -> Iterator[SftpServer]:
    """Start sshd; yield how to reach it; stop it and remove its files."""
    if os.geteuid() != 0:
        raise RuntimeError("the sshd fixture needs root (sshd chroots and switches users)")
    _ensure_account()
    CHROOT_PARENT.mkdir(mode=0o755, exist_ok=True)
    chroot = Path(tempfile.mkdtemp(prefix="sftp-", dir=CHROOT_PARENT))
    chroot.chmod(0o755)
    incoming = chroot / "incoming"
    incoming.mkdir()
    shutil.chown(incoming, user=SFTP_USER)
    workdir = Path(tempfile.mkdtemp(prefix="sshd-"))
    # sshd reads authorized_keys as the signing-in user, so that user must reach it.
    workdir.chmod(0o755)
    _keygen(workdir / "host_key")
    _keygen(workdir / "client_key")
    (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text())
    port = free_loopback_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress 127.0.0.1
HostKey {workdir / "host_key"}
PidFile {workdir / "sshd.pid"}
AuthorizedKeysFile {workdir / "authorized_keys"}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers {SFTP_USER}
Subsystem sftp internal-sftp
ForceCommand internal-sftp
ChrootDirectory {chroot}
LogLevel ERROR
"""
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE
    )
    try:
        wait_until_listening(port)
        host_key_fields = (workdir / "host_key.pub").read_text().split()
        yield SftpServer(
            port=port,
            username=SFTP_USER,
            client_key=paramiko.Ed25519Key.from_private_key_file(str(workdir / "client_key")),
            client_key_text=(workdir / "client_key").read_text(),
            host_key_line=" ".join(host_key_fields[:2]),
            chroot=chroot,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(chroot, ignore_errors=True)
