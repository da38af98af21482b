"""Member education: the plain-language text the rule requires, its versions, and the version
each opt-in and opt-out was given with (STYLE.md #1: services write, selectors read).

CMS-0057-F has the new payer give its members plain-language information on the benefits
of payer-to-payer exchange, their right to opt in and to withdraw, and how to do either —
at or before the opt-in request, annually, and on its website (42 CFR 422.121(b); its
Medicaid, CHIP and QHP twins). A plan administrator publishes versions of that text; a
version never changes once published, so its label names for good the words a member
read. Until a payer publishes one, members are shown the hub's default text.
"""

import re
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from exchange.models import MemberEducationText, OptInRecord
from hub.audit import audit_record
from hub.models import Payer, User

# The hub's default text: its version label is reserved, and a new wording gets a new one.
HUB_DEFAULT_VERSION = "hub-default-1"
_RESERVED_PREFIX = "hub-default"
# An administrator's own label: what a person can read out and type again ("2027", "v2").
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}", re.ASCII)

_HUB_DEFAULT_TITLE = "Bringing your health records to {payer}"
_HUB_DEFAULT_BODY = """\
When you join {payer}, you can ask the health plans that covered you before — in the last \
five years — and any other plan that covers you now to send us the records they hold about \
you. This is called payer-to-payer exchange. A federal rule (CMS-0057-F) gives you this \
choice.

Why it helps: {payer} gets your claims and visits (without what was paid), your health \
information such as conditions, test results, medicines and immunizations, and your prior \
authorizations. That can mean fewer repeated tests and forms, approved treatments that \
carry on without a break, and care that is better coordinated.

It is your choice. Nothing is shared unless you opt in, and saying no does not change your \
coverage or your benefits.

You can change your mind at any time. To withdraw, open your request in this portal and \
choose "Withdraw consent", or contact {payer}'s member services. After you withdraw, nothing \
more is fetched; records already received stay with {payer}.

How to opt in: in this portal, choose "Ask for my records", pick your former plan and agree. \
You can also opt in when you enroll, for example on the enrollment form or by phone.\
"""


@dataclass(frozen=True)
class EducationText:
    """A version of the text as a member or an administrator reads it."""

    version: str
    title: str
    body: str
    # None for the hub's default text, which nobody published.
    published_at: datetime | None
    published_by: str

    @property
    def is_hub_default(self) -> bool:
        return self.version == HUB_DEFAULT_VERSION

    @property
    def paragraphs(self) -> list[str]:
        """Return the body's paragraphs: the text between blank lines, each on one line."""
        return [
            " ".join(part.split())
            for part in re.split(r"\n\s*\n", self.body.replace("\r\n", "\n"))
            if part.strip()
        ]


def _hub_default(payer: Payer) -> EducationText:
    return EducationText(
        version=HUB_DEFAULT_VERSION,
        title=_HUB_DEFAULT_TITLE.format(payer=payer.name),
        body=_HUB_DEFAULT_BODY.format(payer=payer.name),
        published_at=None,
        published_by="",
    )


def _text_of(row: MemberEducationText) -> EducationText:
    publisher = row.published_by
    return EducationText(
        version=row.version,
        title=row.title,
        body=row.body,
        published_at=row.published_at,
        published_by=publisher.get_full_name() or publisher.get_username(),
    )


# --- Selectors ------------------------------------------------------------------------------


def member_education_text_current(*, payer: Payer, at: datetime | None = None) -> EducationText:
    """Return the text members of ``payer`` are shown now, or were shown at ``at``: the
    latest version published by then, else the hub's default."""
    row = (
        MemberEducationText.objects.for_payer(payer)
        .filter(published_at__lte=at or timezone.now())
        .select_related("published_by")
        .first()
    )
    return _text_of(row) if row else _hub_default(payer)


def member_education_version_current(*, payer: Payer | int, at: datetime | None = None) -> str:
    """Return the version label of the text current at ``at`` (now if None)."""
    version = (
        MemberEducationText.objects.for_payer(payer)
        .filter(published_at__lte=at or timezone.now())
        .values_list("version", flat=True)
        .first()
    )
    return version or HUB_DEFAULT_VERSION


def member_education_texts_list(*, payer: Payer) -> list[EducationText]:
    """Return every version ``payer`` published, newest first."""
    return [
        _text_of(row)
        for row in MemberEducationText.objects.for_payer(payer).select_related("published_by")
    ]


def member_education_text_shown(*, payer: Payer, version: str) -> EducationText | None:
    """Return the text of ``version`` if members of ``payer`` can have been shown it — one
    it published, or the hub's default — else None."""
    if version == HUB_DEFAULT_VERSION:
        return _hub_default(payer)
    row = (
        MemberEducationText.objects.for_payer(payer)
        .filter(version=version)
        .select_related("published_by")
        .first()
    )
    return _text_of(row) if row else None


def member_education_version_problem(*, payer: Payer, version: str) -> str:
    """Return why a payer system may not name ``version`` in an opt-in's attestation, or "".

    Once the payer publishes its texts in the hub, the version must be one of them (or the
    hub's default, which its members may have been shown before): the opt-in's record must
    point at words the hub can show. Before that, the payer's own label is taken as it is.
    """
    if not version or not MemberEducationText.objects.for_payer(payer).exists():
        return ""
    if member_education_text_shown(payer=payer, version=version) is not None:
        return ""
    published = list(
        MemberEducationText.objects.for_payer(payer)
        .order_by("published_at", "id")
        .values_list("version", flat=True)
    )
    return (
        f"{payer.name} has published no member-education text of version {version!r}; "
        f"give one of {', '.join(published)}, or leave it out to record the version current "
        "when the opt-in was obtained."
    )


# --- Services -------------------------------------------------------------------------------


class EducationTextRefused(ValueError):
    """The text cannot be published; ``field`` names the form field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def member_education_text_publish(
    *,
    payer: Payer,
    actor: User,
    title: str,
    body: str,
    version: str = "",
    client_address: str | None = None,
) -> MemberEducationText:
    """Publish a new version of the payer's member-education text, current from now on.

    ``version`` is the administrator's label; without one the hub numbers it "1", "2", …
    Raises EducationTextRefused for a label that is taken, reserved or unreadable.
    """
    title, body, version = title.strip(), body.strip(), version.strip()
    if not title:
        raise EducationTextRefused("title", "Give the text a title.")
    if not body:
        raise EducationTextRefused("body", "Write the text members will read.")
    if version and not _LABEL.fullmatch(version):
        raise EducationTextRefused(
            "version",
            "A version label is up to 50 letters, digits, dots, dashes or underscores, "
            "starting with a letter or a digit.",
        )
    if version.lower().startswith(_RESERVED_PREFIX):
        raise EducationTextRefused(
            "version", f"Labels starting with {_RESERVED_PREFIX!r} name the hub's own texts."
        )
    with transaction.atomic():
        # One publication of the payer at a time, so two cannot take the same number.
        Payer.objects.select_for_update().filter(pk=payer.pk).first()
        taken = set(MemberEducationText.objects.for_payer(payer).values_list("version", flat=True))
        if version in taken:
            raise EducationTextRefused(
                "version",
                f"Version {version} is already published, and a published version never "
                "changes. Give the new text another label.",
            )
        if not version:
            number = len(taken) + 1
            while str(number) in taken:
                number += 1
            version = str(number)
        text = MemberEducationText.objects.create(
            payer=payer,
            version=version,
            title=title,
            body=body,
            published_at=timezone.now(),
            published_by=actor,
        )
        audit_record(
            action="member_education.publish",
            obj=text,
            payer=payer,
            actor=actor,
            changes={"version": version, "title": title},
            client_address=client_address,
        )
    return text


def opt_in_withdrawal_record(*, payer: Payer | int, opt_in_record_id: int) -> bool:
    """Record the opt-out of an opt-in: now, with the member-education text current now.

    Return False if it was withdrawn already (the first withdrawal is the one recorded).
    """
    return bool(
        OptInRecord.objects.for_payer(payer)
        .filter(pk=opt_in_record_id, withdrawn_at__isnull=True)
        .update(
            withdrawn_at=timezone.now(),
            withdrawal_education_text_version=member_education_version_current(payer=payer),
        )
    )
