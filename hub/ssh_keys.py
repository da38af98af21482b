"""Parse SSH keys typed by administrators: host keys to pin, client keys to sign in with.

One place turns text into paramiko keys, for the settings forms, the SFTP delivery
client and the hub's SFTP repository alike. Weak keys are refused here, once.
"""

import base64
import binascii
import io

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.pkey import UnknownKeyType

MINIMUM_RSA_BITS = 2048


class SshKeyError(ValueError):
    """The text is not a usable SSH key; the message says why in plain words."""


def _refuse_non_ascii(text: str, what: str) -> None:
    """Refuse a character no key text holds (sshd(8) AUTHORIZED_KEYS FILE FORMAT: key type
    and base64 data are ASCII), naming where it is: a pasted key picks up curly quotes,
    non-breaking spaces and the like from documents and chat windows."""
    for position, char in enumerate(text, start=1):
        if not char.isascii() or char == "\x00":
            raise SshKeyError(
                f"the {what} holds the character {char!r} at position {position}, which SSH "
                "keys never contain; copy the key again from its file"
            )


def parse_public_key_line(text: str) -> paramiko.PKey:
    """Return the key of an OpenSSH public key line (``ssh-ed25519 AAAA... comment``)."""
    fields = text.strip().split()
    if len(fields) < 2:
        raise SshKeyError("paste a public key line such as 'ssh-ed25519 AAAAC3Nz... comment'")
    # The comment after the key may be any text; the type and the key data may not.
    _refuse_non_ascii(" ".join(fields[:2]), "key")
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except binascii.Error:
        raise SshKeyError("the key data after the key type is not base64") from None
    try:
        key = paramiko.PKey.from_type_string(fields[0], blob)
    except UnknownKeyType:
        raise SshKeyError(f"{fields[0]!r} is not an SSH key type the hub knows") from None
    except (paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
        raise SshKeyError(f"this is not a valid SSH public key ({exc})") from None
    _refuse_weak(key)
    return key


def load_private_key(text: str) -> paramiko.PKey:
    """Return the key of an unencrypted OpenSSH or PEM private key (ed25519, ECDSA, RSA)."""
    _refuse_non_ascii(text.strip(), "private key")
    data = text.strip().encode("utf-8") + b"\n"
    loaded: object
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SshKeyError(
            "this private key is protected by a passphrase; give it without one "
            "(the hub encrypts it at rest)"
        ) from None
    except ValueError as exc:
        raise SshKeyError(f"this is not a valid SSH private key ({exc})") from None
    key_class: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise SshKeyError("only ed25519, ECDSA and RSA keys are accepted")
    try:
        key = key_class.from_private_key(io.StringIO(data.decode("utf-8")))
    except paramiko.SSHException as exc:
        # cryptography is lenient about line breaks where paramiko is not (a pasted key
        # whose line breaks were lost): refuse it with a message, not a 500.
        raise SshKeyError(f"this private key could not be read ({exc}); paste it whole") from None
    _refuse_weak(key)
    return key


def public_key_line(key: paramiko.PKey) -> str:
    """Return the OpenSSH public key line of ``key`` (no comment)."""
    return f"{key.get_name()} {key.get_base64()}"


def sha256_fingerprint(key: paramiko.PKey) -> str:
    """Return the fingerprint as OpenSSH prints it: ``SHA256:<base64 without padding>``."""
    return key.fingerprint


def _refuse_weak(key: paramiko.PKey) -> None:
    if key.get_name() == "ssh-dss":
        raise SshKeyError("DSA keys are no longer accepted; use ed25519")
    if key.get_name() == "ssh-rsa" and key.get_bits() < MINIMUM_RSA_BITS:
        raise SshKeyError(f"RSA keys must have at least {MINIMUM_RSA_BITS} bits")
