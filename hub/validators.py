"""Validators for what plan administrators and operators type into settings.

Each raises ``ValidationError`` with a message a person can act on; nothing is
saved until every value passes.
"""

import ipaddress
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from hub.address_policy import address_literal, address_refusal
from hub.ssh_keys import SshKeyError, load_private_key, parse_public_key_line

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


def validate_npi(value: str) -> None:
    """Refuse anything but a 10-digit NPI with a correct check digit.

    The check digit is the Luhn digit of the first nine digits prefixed with the
    card issuer code 80840 (CMS, NPI standard, 45 CFR 162.406).
    """
    # isdigit() alone takes other scripts' digits too ("²", "٣"), which int() may refuse.
    if len(value) != 10 or not (value.isascii() and value.isdigit()):
        raise ValidationError("An NPI has exactly 10 digits.", code="npi_format")
    digits = [int(char) for char in "80840" + value[:9]]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    if (10 - total % 10) % 10 != int(value[9]):
        raise ValidationError(
            "This NPI's check digit is wrong; please check it for a typo.", code="npi_check"
        )


def host_is_allow_listed(host: str) -> bool:
    """Return whether ``host`` is named in OUTBOUND_ALLOWED_HOSTS (by name, address or network)."""
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in settings.OUTBOUND_ALLOWED_HOSTS:
        entry = entry.lower()
        if entry == host:
            return True
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def validate_public_host(host: str) -> None:
    """Refuse a host the hub would never connect to: an IP address the one address policy
    (hub/address_policy.py) refuses, or a name that always means this machine.

    Other host *names* are vetted where the hub connects (hub/outbound.py resolves them and
    checks every address, on every redirect): their answers may change after saving.
    """
    literal = host.strip("[]")
    if not literal or host_is_allow_listed(literal):
        return
    address = address_literal(literal)
    if address is not None:
        refusal = address_refusal(address)
        if refusal:
            raise ValidationError(
                f"{refusal}; the hub only connects to public addresses.", code="private_address"
            )
        return
    name = literal.lower().rstrip(".")
    # RFC 6761 §6.3: "localhost" and every name under it are this machine's loopback.
    if name == "localhost" or name.endswith(".localhost"):
        raise ValidationError(
            f"{literal} names this machine; the hub only connects to public addresses.",
            code="private_address",
        )


def validate_payer_url(value: str) -> None:
    """Refuse a payer-facing URL that is malformed, not HTTPS, or aimed at a non-public host.

    The one check of every stored or typed URL the hub will call: it parses the URL as the
    HTTP client will (so a saved URL never fails there for its form), applies the address
    policy to a literal address, and accepts plain HTTP only for hosts in
    OUTBOUND_ALLOWED_HOSTS (the demo's and the tests' loopback sandboxes); everything a real
    payer exposes must use TLS.
    """
    if "\x00" in value:
        # PostgreSQL text cannot hold a NUL, and no URL contains one (RFC 3986 §2).
        raise ValidationError("The URL holds a NUL character; type it again.", code="nul")
    URLValidator(
        schemes=["http", "https"],
        message="Enter a full URL such as https://fhir.example-payer.com/r4.",
    )(value)
    parts = urlsplit(value)
    try:
        _ = parts.port
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL) as exc:
        # ValueError: a port outside 0-65535 (urlsplit), a host name IDNA refuses (idna's
        # own errors are UnicodeErrors).
        raise ValidationError(
            f"The URL cannot be used: {exc}. Enter a full URL such as "
            "https://fhir.example-payer.com/r4.",
            code="unparseable",
        ) from None
    if parts.username or parts.password:
        raise ValidationError("Do not put a user name or password in the URL.", code="credentials")
    if parts.fragment:
        raise ValidationError("The URL must not contain a #fragment.", code="fragment")
    if parts.scheme != "https" and not host_is_allow_listed(parts.hostname or ""):
        raise ValidationError(
            "The URL must start with https:// — payer traffic is only sent over TLS.",
            code="not_https",
        )
    validate_public_host(parts.hostname or "")


def validate_ssh_public_key(value: str) -> None:
    """Refuse anything but a usable OpenSSH public key line."""
    try:
        parse_public_key_line(value)
    except SshKeyError as exc:
        raise ValidationError(
            f"Not a usable SSH public key: {exc}.", code="ssh_public_key"
        ) from None


def validate_ssh_private_key(value: str) -> None:
    """Refuse anything but an unencrypted ed25519, ECDSA or RSA (>= 2048 bits) private key."""
    try:
        load_private_key(value)
    except SshKeyError as exc:
        raise ValidationError(
            f"Not a usable SSH private key: {exc}.", code="ssh_private_key"
        ) from None


# RFC 6749 Appendix A.1: client-id = *VSCHAR (%x20-7E). Some holders issue long ids (the
# SMART reference bulk-data-server's are signed JWTs), so the hub keeps up to 2,048.
CLIENT_ID_MAX_LENGTH = 2048


def validate_client_id(value: str) -> None:
    """Refuse a client id a former payer cannot have issued: padded, or with control characters.

    Such a value is nearly always a copy-and-paste slip, and the holder would refuse every
    token request made with it, so it is refused here rather than trimmed silently.
    """
    if value != value.strip():
        raise ValidationError(
            "The client id starts or ends with a space or line break; remove it and paste "
            "exactly the id the former payer issued.",
            code="client_id_whitespace",
        )
    for position, char in enumerate(value, start=1):
        if not " " <= char <= "~":
            what = "a control character (such as a tab or line break)"
            if char.isprintable():
                what = f"the character {char!r}, which client ids never contain"
            raise ValidationError(
                f"The client id holds {what} at position {position}; client ids are printable "
                "ASCII only (RFC 6749 Appendix A.1). Copy it again from the former payer.",
                code="client_id_character",
            )
