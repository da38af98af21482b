"""The real sshd that delivery tests push to: pinned host keys connect, anything else fails."""

import io

import paramiko
import pytest

from hub.ssh_keys import parse_public_key_line
from tests.support.sshd import SftpServer


def _connect(server: SftpServer, host_key_line: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(f"[127.0.0.1]:{server.port}", *host_key_line.split()[:1],
                               parse_public_key_line(host_key_line))  # fmt: skip
    client.connect(
        "127.0.0.1",
        port=server.port,
        username=server.username,
        pkey=server.client_key,
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    return client


def test_upload_under_a_temporary_name_then_rename(sftp_server: SftpServer) -> None:
    client = _connect(sftp_server, sftp_server.host_key_line)
    try:
        sftp = client.open_sftp()
        sftp.putfo(io.BytesIO(b'{"resourceType": "Bundle"}'), "incoming/.bundle.json.part")
        assert sftp.stat("incoming/.bundle.json.part").st_size == 26
        sftp.rename("incoming/.bundle.json.part", "incoming/bundle.json")
        assert sftp.listdir("incoming") == ["bundle.json"]
        # Chrooted: the account sees its own tree as /, nothing of the host.
        assert sorted(sftp.listdir("/")) == ["incoming"]
    finally:
        client.close()
    assert (sftp_server.incoming / "bundle.json").read_bytes() == b'{"resourceType": "Bundle"}'


def test_a_server_whose_host_key_differs_from_the_pinned_one_is_refused(
    sftp_server: SftpServer,
) -> None:
    impostor = paramiko.Ed25519Key.from_private_key(io.StringIO(_new_ed25519_pem()))
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(sftp_server, f"{impostor.get_name()} {impostor.get_base64()}")


def _new_ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        .decode()
    )
