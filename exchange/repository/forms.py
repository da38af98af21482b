"""The form a plan administrator registers a system's SSH key with."""

import ipaddress
import re
from datetime import UTC, datetime, time
from typing import Any

from django import forms
from django.utils import timezone

from exchange.repository.selectors import repository_key_registered
from hub.models import Payer
from hub.ssh_keys import SshKeyError, parse_public_key_line, sha256_fingerprint


class RepositoryKeyForm(forms.Form):
    label = forms.CharField(
        max_length=100, help_text="Which system holds the key, e.g. “claims intake, prod”."
    )
    public_key = forms.CharField(
        label="Public key",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One OpenSSH public key line: ed25519, ECDSA, or RSA of at least 2048 bits.",
    )
    allowed_sources = forms.CharField(
        label="Allowed source addresses",
        required=False,
        help_text="Optional: addresses or networks (CIDR) the key may sign in from, separated "
        "by commas or spaces. Empty means from anywhere.",
    )
    expires_on = forms.DateField(
        label="Expires on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional: the key stops working at the start of this day (UTC).",
    )

    def __init__(self, *args: Any, payer: Payer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.payer = payer

    def clean_public_key(self) -> str:
        text = self.cleaned_data["public_key"].strip()
        if "\n" in text:
            raise forms.ValidationError("Paste exactly one key line.")
        try:
            key = parse_public_key_line(text)
        except SshKeyError as exc:
            raise forms.ValidationError(f"Not a usable SSH public key: {exc}.") from None
        existing = repository_key_registered(payer=self.payer, fingerprint=sha256_fingerprint(key))
        if existing is not None:
            raise forms.ValidationError(
                f"This key is already registered as “{existing.label}”"
                f"{' (revoked)' if existing.revoked_at else ''}."
            )
        return text

    def clean_allowed_sources(self) -> list[str]:
        networks = []
        for entry in re.split(r"[\s,]+", self.cleaned_data["allowed_sources"].strip()):
            if not entry:
                continue
            try:
                networks.append(str(ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise forms.ValidationError(
                    f"“{entry}” is not an address or network; write e.g. 203.0.113.7 or 203.0.113.0/24."
                ) from None
        return networks

    def clean_expires_on(self) -> datetime | None:
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        expires_at = datetime.combine(day, time.min, tzinfo=UTC)
        if expires_at <= timezone.now():
            raise forms.ValidationError("Choose a day in the future.")
        return expires_at
