"""Derive a sandbox payer's organization identifiers deterministically from its name."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
# NAIC company codes are the usual five-digit payer ids on member cards.
PAYER_ID_SYSTEM = "urn:oid:2.16.840.1.113883.6.300"


def _digest(*parts: str) -> int:
    raw = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(raw[:8], "big")


def npi_check_digit(first_nine: str) -> str:
    """Return the Luhn check digit of an NPI, computed over the 80840 prefix (CMS NPI rule)."""
    digits = [int(c) for c in "80840" + first_nine]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            doubled = digit * 2
            total += doubled - 9 if doubled > 9 else doubled
        else:
            total += digit
    return str((10 - total % 10) % 10)


def derive_npi(*parts: str) -> str:
    """Return a valid-looking ten-digit NPI that depends only on parts."""
    first_nine = "1" + f"{_digest('npi', *parts) % 10**8:08d}"
    return first_nine + npi_check_digit(first_nine)


def slugify(name: str) -> str:
    """Return a lower-case identifier-safe form of a payer name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "payer"


@dataclass(frozen=True)
class PayerIdentity:
    """The organization identifiers and naming of one sandbox payer."""

    name: str
    slug: str
    npi: str
    payer_id: str

    @property
    def member_system(self) -> str:
        """Return the system of member numbers (the HRex UMB identifier)."""
        return f"https://sandbox.example.org/{self.slug}/identifiers/member"

    @property
    def card_system(self) -> str:
        """Return the system of the card numbers (Coverage identifier typed MB)."""
        return f"https://sandbox.example.org/{self.slug}/identifiers/card"

    @property
    def member_prefix(self) -> str:
        """Return the three letters that start this payer's card numbers."""
        letters = re.sub(r"[^A-Z]", "", self.name.upper())
        return (letters + "XXX")[:3]

    def identifiers(self) -> list[dict[str, str]]:
        """Return the Organization.identifier list of this payer."""
        return [
            {"system": NPI_SYSTEM, "value": self.npi},
            {"system": PAYER_ID_SYSTEM, "value": self.payer_id},
        ]


def payer_identity(
    name: str, *, npi: str | None = None, payer_id: str | None = None
) -> PayerIdentity:
    """Return the identity of the payer called name, with optional explicit identifiers."""
    return PayerIdentity(
        name=name,
        slug=slugify(name),
        npi=npi or derive_npi("payer", name),
        payer_id=payer_id or f"{_digest('payer-id', name) % 90000 + 10000:05d}",
    )
