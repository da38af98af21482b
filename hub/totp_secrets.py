"""How an operator's authenticator secret is written for people to type in.

Free of Django on purpose: the demo launcher (hub/demo.py) prints the demo operator's
secret before any settings exist, and the operator_account command prints a real one.
"""

import base64


def totp_secret_base32(key: bytes) -> str:
    """Return a TOTP secret as authenticator apps take it typed in (RFC 4648 base32, unpadded,
    as Google's Key Uri Format writes ``secret``)."""
    return base64.b32encode(key).decode().rstrip("=")
