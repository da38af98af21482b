"""Read a roster: the members whose records a plan asks of their former payers in bulk.

A plan administrator of the *new* payer uploads one file. It is read whole and accepted
whole, or refused (``RosterRefused``) with every problem found, each naming the line and
the column (or FHIR element) to fix: nothing is accepted half. Whatever the bytes, the
answer is a ``Roster`` or ``RosterRefused``.

Three formats, told apart by the file's extension:

**CSV** (``.csv``): UTF-8 (a byte-order mark is fine; in a spreadsheet, save as "CSV UTF-8"),
a header row, then one member per row. Header names are case-insensitive and in any order;
every column below is required, and a column not listed is refused. Lines are counted as a
spreadsheet numbers its rows: the header is line 1. Empty rows are skipped.

=====================  ==================================================================
column                 what it holds
=====================  ==================================================================
member_id              the member's id at your plan (the member-id claim your identity
                       provider sends at sign-in), at most 100 characters
family_name            the member's family name
given_names            the member's given names, separated by spaces
birth_date             date of birth, YYYY-MM-DD
gender                 male, female, other or unknown (FHIR administrative gender)
former_payer_npi       the former (or concurrent) payer's 10-digit NPI; it must take
                       part in the hub
former_member_id       the member id printed on the card of the former plan
former_coverage_start  first day of the coverage at the former payer, YYYY-MM-DD
former_coverage_end    last day of that coverage, YYYY-MM-DD; empty while the member is
                       still covered there (concurrent coverage)
new_coverage_start     first day of the coverage at your plan, YYYY-MM-DD (it starts the
                       rule's one-week clock, CMS-0057-F)
consent                everything (sensitive data included) or non_sensitive
opted_in_at            when the member opted in: an ISO 8601 date-time with its UTC
                       offset, e.g. 2026-11-20T14:03:00-05:00
=====================  ==================================================================

The same member may appear once per former payer; ``exchange/bulk/roster_example.csv``
is a roster of three synthetic members.

**NDJSON** (``.ndjson``): one FHIR ``Parameters`` per line, each holding one or more
``MemberBundle`` parameters shaped as PDex STU 2.2 ``$bulk-member-match`` takes them
(PDexMultiMemberMatchRequestParameters): parts ``MemberPatient`` (Patient: name, birthDate,
gender), ``CoverageToMatch`` (Coverage: identifier = the former card's member id, period,
``payor[0].identifier`` = the former payer's NPI under ``http://hl7.org/fhir/sid/us-npi``),
``CoverageToLink`` (Coverage: identifier = the member id at your plan, ``period.start`` =
the coverage start at your plan) and ``Consent`` (``policy[0].uri`` the HRex policy,
``…#sensitive`` or ``…#regular``; ``dateTime`` = when the member opted in). When
CoverageToLink has no identifier, MemberPatient's is the member id at your plan.
MemberBundles are numbered from 1 through the whole file, and problems name them.

**Parameters** (``.json``): a single such ``Parameters`` resource.
"""

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from exchange.consents.resource import POLICY_URI
from exchange.enrollment import MemberOptIn
from exchange.member_match import ADMINISTRATIVE_GENDERS
from exchange.models import ConsentPolicy
from hub.iso_dates import iso_day
from hub.models import Payer, PayerStatus
from hub.validators import NPI_SYSTEM, validate_npi

MAX_MEMBERS = 20_000
# Problems listed in one refusal; beyond it the administrator is told how many more there are.
MAX_PROBLEMS = 200

# The CSV columns, in the order the example has them, and what each holds (the upload
# page shows this table).
CSV_COLUMN_HELP = {
    "member_id": (
        "The member's id at your plan (the member-id claim your identity provider sends at "
        "sign-in), at most 100 characters"
    ),
    "family_name": "The member's family name",
    "given_names": "The member's given names, separated by spaces",
    "birth_date": "Date of birth, YYYY-MM-DD",
    "gender": "male, female, other or unknown",
    "former_payer_npi": (
        "The former (or concurrent) payer's 10-digit NPI; it must take part in the hub"
    ),
    "former_member_id": "The member id printed on the card of the former plan",
    "former_coverage_start": "First day of the coverage at the former payer, YYYY-MM-DD",
    "former_coverage_end": (
        "Last day of that coverage, YYYY-MM-DD; empty while the member is still covered there "
        "(concurrent coverage)"
    ),
    "new_coverage_start": (
        "First day of the coverage at your plan, YYYY-MM-DD; it starts the rule's one-week clock"
    ),
    "consent": "everything (sensitive data included) or non_sensitive",
    "opted_in_at": (
        "When the member opted in: an ISO 8601 date-time with its UTC offset, e.g. "
        "2026-11-20T14:03:00-05:00"
    ),
}
CSV_COLUMNS = tuple(CSV_COLUMN_HELP)
_OPTIONAL = frozenset({"former_coverage_end"})
CONSENT_CHOICES = {"everything": ConsentPolicy.SENSITIVE, "non_sensitive": ConsentPolicy.REGULAR}
# Where each roster column is found in a MemberBundle.
FHIR_ELEMENTS = {
    "member_id": "CoverageToLink.identifier",
    "family_name": "MemberPatient.name.family",
    "given_names": "MemberPatient.name.given",
    "birth_date": "MemberPatient.birthDate",
    "gender": "MemberPatient.gender",
    "former_payer_npi": "CoverageToMatch.payor[0].identifier",
    "former_member_id": "CoverageToMatch.identifier",
    "former_coverage_start": "CoverageToMatch.period.start",
    "former_coverage_end": "CoverageToMatch.period.end",
    "new_coverage_start": "CoverageToLink.period.start",
    "consent": "Consent.policy[0].uri",
    "opted_in_at": "Consent.dateTime",
}
# The MemberBundle parts (PDex PDexMultiMemberMatchRequestParameters) and their resource types.
MEMBER_BUNDLE_PARTS = {
    "MemberPatient": "Patient",
    "CoverageToMatch": "Coverage",
    "CoverageToLink": "Coverage",
    "Consent": "Consent",
}
_POLICY_OF_URI = {POLICY_URI.format(policy=policy.value): policy for policy in ConsentPolicy}
_CONSENT_CHOICE_OF_POLICY = {policy: choice for choice, policy in CONSENT_CHOICES.items()}
_NPI = re.compile(r"\d{10}", re.ASCII)
# Control characters and lone surrogates (JSON lets "\u0000" and "\ud800" through): no name
# or id holds them, and PostgreSQL refuses them in text.
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# Lengths of the User fields the values are kept in (hub.models.User).
_MAX_LENGTHS = {"member_id": 100, "former_member_id": 100, "family_name": 150, "given_names": 150}
# ISO 8601 date-time; the offset (Z or ±hh:mm) is checked on its own for a clearer message.
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(?P<offset>Z|[+-]\d{2}:\d{2})?", re.ASCII
)


@dataclass(frozen=True)
class RosterMember(MemberOptIn):
    """One member of a roster, checked: what a Consent and an ExchangeRequest are made of."""

    # The CSV line (the header is line 1), or the MemberBundle's number from 1.
    line: int


@dataclass(frozen=True)
class Roster:
    format: str  # "csv", "ndjson" or "parameters"
    members: list[RosterMember]


@dataclass(frozen=True)
class RosterProblem:
    """Something to fix in a roster, in a sentence that names where it is.

    ``line`` is the CSV line, the MemberBundle's number, or for NDJSON a line of the file
    that holds no readable MemberBundle (the message says which); 0 for the whole file.
    """

    line: int
    column: str  # the CSV column or FHIR element, "" if none
    message: str


class RosterRefused(ValueError):
    """The roster is refused as a whole; ``problems`` lists what to fix (at most
    MAX_PROBLEMS of them, the last saying how many more there are)."""

    def __init__(self, problems: list[RosterProblem]) -> None:
        problems = sorted(problems, key=lambda problem: problem.line)
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [
                *problems[:MAX_PROBLEMS],
                RosterProblem(
                    0, "", f"There are {more:,} more problems; fix these and upload it again."
                ),
            ]
        self.problems = problems
        super().__init__(f"the roster was refused: {problems[0].message}")


@dataclass
class _Entry:
    """One member as the file states it, before any check: text values by roster column.

    A value of None is one the reader could not find and has already reported.
    """

    line: int
    label: str  # how a sentence starting with it names it: "Line 7", "MemberBundle 12"
    mention: str  # how it is named within a sentence: "line 7", "MemberBundle 12"
    values: dict[str, str | None]
    elements: dict[str, str] = field(default_factory=dict)  # column -> name in the file

    def column(self, key: str) -> str:
        return self.elements.get(key, key)


def roster_read(*, data: bytes, filename: str, new_payer: Payer, now: datetime) -> Roster:
    """Return the roster in ``data`` (``filename`` tells its format) of members of ``new_payer``.

    Raises RosterRefused listing every problem found; nothing of the file is accepted then.
    """
    roster_format = {".csv": "csv", ".ndjson": "ndjson", ".json": "parameters"}.get(
        PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    )
    if roster_format is None:
        raise RosterRefused([_whole_file("The roster must be a .csv, .ndjson or .json file.")])
    if not data.strip():
        raise RosterRefused([_whole_file("The file is empty.")])
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise RosterRefused(
            [
                RosterProblem(
                    line,
                    "",
                    f"Line {line} has a byte that is not UTF-8 text; save the file as UTF-8 "
                    "(in a spreadsheet: CSV UTF-8).",
                )
            ]
        ) from None
    problems: list[RosterProblem] = []
    if roster_format == "csv":
        entries = _csv_entries(text, problems)
    elif roster_format == "ndjson":
        entries = _ndjson_entries(text, problems)
    else:
        entries = _parameters_file_entries(text, problems)
    if len(entries) > MAX_MEMBERS:
        raise RosterRefused(
            [
                _whole_file(
                    f"The roster has {len(entries):,} members; at most {MAX_MEMBERS:,} are "
                    "taken at once. Split it into several files."
                )
            ]
        )
    members = _members_checked(entries, new_payer=new_payer, now=now, problems=problems)
    if not problems and not members:
        problems.append(_whole_file("The roster lists no members."))
    if problems:
        raise RosterRefused(problems)
    return Roster(format=roster_format, members=members)


# The columns of a member posted on its own (the payer-system API, api/views.py): the roster's,
# but the former payer, which the whole post names once.
MEMBER_FIELDS = tuple(column for column in CSV_COLUMNS if column != "former_payer_npi")


def roster_of_members(
    *, members: Sequence[Any] | str, former_payer: Payer, new_payer: Payer, now: datetime
) -> Roster:
    """Return the roster of ``members`` as a payer system posts them, all to be asked of
    ``former_payer``: a list of objects of MEMBER_FIELDS (JSON; each named ``members[i]``),
    or NDJSON text, one such object a line (each named by its line).

    Each member gets the checks a roster file's row gets. Raises RosterRefused listing every
    problem found, ``line`` numbering the member (JSON: its index + 1) and ``column`` its field.
    """
    problems: list[RosterProblem] = []
    refusal = _former_payer_refusal(former_payer=former_payer, new_payer=new_payer)
    if refusal:
        raise RosterRefused([RosterProblem(0, "former_payer", refusal)])
    roster_format = "ndjson" if isinstance(members, str) else "json"
    if isinstance(members, str):
        numbered = []
        for line, content in enumerate(members.split("\n"), start=1):
            if content.strip():
                found = len(problems)
                member = _json_loaded(content, f"Line {line}", line, problems)
                if len(problems) == found:
                    numbered.append((line, member))
    else:
        numbered = list(enumerate(members, start=1))
    if len(numbered) > MAX_MEMBERS:
        raise RosterRefused(
            [_whole_file(f"{len(numbered):,} members are posted; at most {MAX_MEMBERS:,} at once.")]
        )
    entries = [
        _member_entry(member, line=line, roster_format=roster_format, problems=problems)
        for line, member in numbered
    ]
    for entry in entries:
        entry.values["former_payer_npi"] = former_payer.npi
    checked = _members_checked(entries, new_payer=new_payer, now=now, problems=problems)
    if not problems and not checked:
        problems.append(_whole_file("No member is posted."))
    if problems:
        raise RosterRefused(problems)
    return Roster(format=roster_format, members=checked)


def _former_payer_refusal(*, former_payer: Payer, new_payer: Payer) -> str:
    """Return why no member may be asked of ``former_payer``, or "" (as the rows' check)."""
    if former_payer.pk == new_payer.pk:
        return f"{former_payer.name} is your own plan; give the members' former payer."
    if former_payer.status != PayerStatus.PARTICIPATING:
        return (
            f"{former_payer.name} does not take part in the hub yet, so records cannot be "
            "asked of it."
        )
    if not former_payer.npi:
        return f"{former_payer.name} has no NPI in the hub's directory; bulk requests name it."
    return ""


def _member_entry(
    member: Any, *, line: int, roster_format: str, problems: list[RosterProblem]
) -> _Entry:
    """Read one posted member into roster columns; report a field that is not text."""
    if roster_format == "ndjson":
        label, mention = f"Line {line}", f"line {line}"
    else:
        label = mention = f"members[{line - 1}]"
    values: dict[str, str | None] = dict.fromkeys(MEMBER_FIELDS, "")
    entry = _Entry(line=line, label=label, mention=mention, values=values)
    if not isinstance(member, dict):
        problems.append(RosterProblem(line, "", f"{label} is not a JSON object of a member."))
        entry.values = dict.fromkeys(MEMBER_FIELDS)
        return entry
    for key, value in member.items():
        if key not in MEMBER_FIELDS:
            problems.append(
                RosterProblem(
                    line,
                    str(key),
                    f"{label}: {str(key)[:40]!r} is not a member field; the fields are "
                    f"{', '.join(MEMBER_FIELDS)}.",
                )
            )
        elif value is None and key == "former_coverage_end":
            values[key] = ""
        elif (
            key == "given_names"
            and isinstance(value, list)
            and all(isinstance(part, str) for part in value)
        ):
            values[key] = " ".join(part.strip() for part in value)
        elif isinstance(value, str):
            values[key] = value.strip()
        else:
            problems.append(RosterProblem(line, key, f"{label}: {key} must be a string."))
            values[key] = None
    return entry


def _whole_file(message: str) -> RosterProblem:
    return RosterProblem(0, "", message)


# --- CSV -------------------------------------------------------------------------------


def _csv_entries(text: str, problems: list[RosterProblem]) -> list[_Entry]:
    # strict: a stray or unclosed quote is an error to report, not a field run on silently.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    entries: list[_Entry] = []
    try:
        header = next(reader, None)
        columns = _csv_header_checked(header or [], problems)
        if columns is None:
            return []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(columns) and not any(cell.strip() for cell in row[len(columns) :]):
                row = row[: len(columns)]  # a spreadsheet's trailing empty cells
            if len(row) != len(columns):
                problems.append(
                    RosterProblem(
                        line,
                        "",
                        f"Line {line} has {len(row)} values; the header names {len(columns)} "
                        "columns.",
                    )
                )
                continue
            values: dict[str, str | None] = {
                column: cell.strip() for column, cell in zip(columns, row, strict=True)
            }
            # Spreadsheets capitalise; the codes are lower-case.
            for coded in ("gender", "consent"):
                values[coded] = (values[coded] or "").lower()
            entries.append(
                _Entry(line=line, label=f"Line {line}", mention=f"line {line}", values=values)
            )
    except csv.Error as exc:
        problems.append(
            RosterProblem(reader.line_num, "", f"Line {reader.line_num} is not valid CSV ({exc}).")
        )
    return entries


def _csv_header_checked(header: list[str], problems: list[RosterProblem]) -> list[str] | None:
    """Return the header's roster columns in file order, or None after reporting its problems."""
    columns = [name.strip().lower() for name in header]
    found = len(problems)
    for name in sorted({name for name in columns if columns.count(name) > 1}):
        problems.append(RosterProblem(1, name, f"The column {name} appears more than once."))
    for name in dict.fromkeys(columns):
        if name not in CSV_COLUMNS:
            problems.append(
                RosterProblem(
                    1,
                    name,
                    f"The column {name!r} is not a roster column; the columns are "
                    f"{', '.join(CSV_COLUMNS)}.",
                )
            )
    for name in CSV_COLUMNS:
        if name not in columns:
            problems.append(RosterProblem(0, name, f"The roster has no {name} column."))
    return None if len(problems) > found else columns


# --- NDJSON and Parameters ----------------------------------------------------------------


def _ndjson_entries(text: str, problems: list[RosterProblem]) -> list[_Entry]:
    entries: list[_Entry] = []
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        resource = _json_loaded(content, f"Line {line}", line, problems)
        if resource is not None:
            entries += _parameters_entries(
                resource, where=f"Line {line}", line=line, numbered=len(entries), problems=problems
            )
    return entries


def _parameters_file_entries(text: str, problems: list[RosterProblem]) -> list[_Entry]:
    resource = _json_loaded(text, "The file", 0, problems)
    if resource is None:
        return []
    return _parameters_entries(resource, where="The file", line=0, numbered=0, problems=problems)


def _json_loaded(text: str, where: str, line: int, problems: list[RosterProblem]) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        problems.append(RosterProblem(line, "", f"{where} is JSON nested too deeply to read."))
    except ValueError as exc:
        problems.append(RosterProblem(line, "", f"{where} is not valid JSON ({exc})."))
    return None


def _parameters_entries(
    resource: Any, *, where: str, line: int, numbered: int, problems: list[RosterProblem]
) -> list[_Entry]:
    """Return the MemberBundles of a Parameters resource, numbered on from ``numbered``."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Parameters":
        problems.append(RosterProblem(line, "", f"{where} is not a FHIR Parameters resource."))
        return []
    entries: list[_Entry] = []
    found = len(problems)
    for parameter in _list(resource.get("parameter")):
        name = _text(_dict(parameter).get("name"))
        if name != "MemberBundle":
            problems.append(
                RosterProblem(
                    line, name, f"{where} has a parameter {name!r}; only MemberBundle is taken."
                )
            )
            continue
        number = numbered + len(entries) + 1
        entries.append(_member_bundle_entry(_dict(parameter), number, problems))
    if not entries and len(problems) == found:
        problems.append(RosterProblem(line, "", f"{where} holds no MemberBundle."))
    return entries


# Reports a problem of the MemberBundle being read: (column, message).
_Report = Callable[[str, str], None]


def _member_bundle_entry(
    bundle: dict[str, Any], number: int, problems: list[RosterProblem]
) -> _Entry:
    """Read one PDex MemberBundle into roster columns (module docstring); report what is amiss."""
    label = f"MemberBundle {number}"

    def problem(column: str, message: str) -> None:
        problems.append(RosterProblem(number, column, f"{label}: {message}"))

    parts: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for part in _list(bundle.get("part")):
        name = _text(_dict(part).get("name"))
        resource = _dict(part).get("resource")
        if name not in MEMBER_BUNDLE_PARTS:
            problem(name, f"the part {name!r} is not one of {', '.join(MEMBER_BUNDLE_PARTS)}.")
        elif name in seen:
            problem(name, f"{name} appears more than once.")
        elif not isinstance(resource, dict) or (
            resource.get("resourceType") != MEMBER_BUNDLE_PARTS[name]
        ):
            problem(name, f"{name} is not a {MEMBER_BUNDLE_PARTS[name]} resource.")
        else:
            parts[name] = resource
        seen.add(name)
    for name in MEMBER_BUNDLE_PARTS:
        if name not in seen:
            problem(name, f"there is no {name}.")

    patient = parts.get("MemberPatient")
    to_match = parts.get("CoverageToMatch")
    to_link = parts.get("CoverageToLink")
    consent = parts.get("Consent")
    values: dict[str, str | None] = dict.fromkeys(CSV_COLUMNS)
    if patient is not None:
        names = [_dict(human_name) for human_name in _list(patient.get("name"))]
        official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
        given = [_text(part).strip() for part in _list(official.get("given"))]
        values |= {
            "family_name": _text(official.get("family")).strip(),
            "given_names": " ".join(part for part in given if part),
            "birth_date": _text(patient.get("birthDate")).strip(),
            "gender": _text(patient.get("gender")).strip(),
        }
    if to_match is not None:
        period = _dict(to_match.get("period"))
        values |= {
            "former_member_id": _member_id(to_match),
            "former_coverage_start": _day_of(_text(period.get("start"))),
            "former_coverage_end": _day_of(_text(period.get("end"))),
            "former_payer_npi": _payor_npi(to_match, problem),
        }
    if to_link is not None:
        values["new_coverage_start"] = _day_of(_text(_dict(to_link.get("period")).get("start")))
        values["member_id"] = _member_id(to_link) or (
            _member_id(patient) if patient is not None else None
        )
    if consent is not None:
        values["opted_in_at"] = _text(consent.get("dateTime")).strip()
        values["consent"] = _consent_choice(consent, problem)
    return _Entry(line=number, label=label, mention=label, values=values, elements=FHIR_ELEMENTS)


def _member_id(resource: dict[str, Any]) -> str:
    """Return the member id among ``resource``'s identifiers: the one typed v2-0203#MB, else
    the first (HRex: the member's card id is typed MB)."""
    identifiers = [_dict(identifier) for identifier in _list(resource.get("identifier"))]
    typed = [
        identifier
        for identifier in identifiers
        if any(
            _dict(coding).get("code") == "MB"
            for coding in _list(_dict(identifier.get("type")).get("coding"))
        )
    ]
    chosen = (typed or identifiers or [{}])[0]
    return _text(chosen.get("value")).strip()


def _payor_npi(coverage: dict[str, Any], problem: _Report) -> str | None:
    column = FHIR_ELEMENTS["former_payer_npi"]
    payors = _list(coverage.get("payor"))
    identifier = _dict(_dict(payors[0]).get("identifier")) if payors else {}
    if not identifier:
        problem(column, "CoverageToMatch has no payor identifier.")
        return None
    if identifier.get("system") != NPI_SYSTEM:
        problem(
            column,
            f"CoverageToMatch's payor is not named by NPI; give payor[0].identifier the system "
            f"{NPI_SYSTEM} and the former payer's NPI.",
        )
        return None
    return _text(identifier.get("value")).strip()


def _consent_choice(consent: dict[str, Any], problem: _Report) -> str | None:
    """Return the roster's consent choice of an HRex Consent, or None after reporting why not."""
    if consent.get("status", "active") != "active":
        problem("Consent.status", "the Consent is not active.")
        return None
    policies = _list(consent.get("policy"))
    uri = _text(_dict(policies[0]).get("uri")).strip() if policies else ""
    if not uri:
        return ""
    policy = _POLICY_OF_URI.get(uri)
    if policy is None:
        problem(
            FHIR_ELEMENTS["consent"],
            f"the Consent's policy {uri[:200]!r} is not an HRex consent policy "
            f"({' or '.join(_POLICY_OF_URI)}).",
        )
        return None
    return _CONSENT_CHOICE_OF_POLICY[policy]


def _day_of(value: str) -> str:
    """Return the day of a FHIR date or dateTime (Period takes either); "" stays ""."""
    value = value.strip()
    return value[:10] if len(value) > 10 and value[10] == "T" else value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- Checks common to every format -------------------------------------------------------


def _members_checked(
    entries: list[_Entry], *, new_payer: Payer, now: datetime, problems: list[RosterProblem]
) -> list[RosterMember]:
    npis = {entry.values.get("former_payer_npi") or "" for entry in entries}
    payers = {
        payer.npi: payer
        for payer in Payer.objects.filter(npi__in=[npi for npi in npis if _NPI.fullmatch(npi)])
    }
    checker = _EntryCheck(new_payer=new_payer, payers=payers, now=now, problems=problems)
    members = [member for entry in entries if (member := checker.member(entry)) is not None]
    _repeats_reported(members, entries, problems)
    return members


def _repeats_reported(
    members: list[RosterMember], entries: list[_Entry], problems: list[RosterProblem]
) -> None:
    """Report a member listed twice for one former payer, and one member id given two people."""
    entry_of = {entry.line: entry for entry in entries}
    first_of_pair: dict[tuple[str, int], RosterMember] = {}
    first_of_id: dict[str, RosterMember] = {}
    for member in members:
        label = entry_of[member.line].label
        earlier = first_of_pair.setdefault((member.member_id, member.former_payer.pk), member)
        if earlier is not member:
            problems.append(
                RosterProblem(
                    member.line,
                    "member_id",
                    f"{label} repeats the member of {entry_of[earlier.line].mention}.",
                )
            )
            continue
        same_id = first_of_id.setdefault(member.member_id, member)
        person = (member.family, member.given, member.birth_date, member.gender)
        if person != (same_id.family, same_id.given, same_id.birth_date, same_id.gender):
            problems.append(
                RosterProblem(
                    member.line,
                    "member_id",
                    f"{label} gives the member id of {entry_of[same_id.line].mention} to a "
                    "person with another name, date of birth or gender.",
                )
            )


class _EntryCheck:
    """Turn entries into RosterMembers, reporting every problem of each."""

    def __init__(
        self,
        *,
        new_payer: Payer,
        payers: dict[str, Payer],
        now: datetime,
        problems: list[RosterProblem],
    ) -> None:
        self.new_payer = new_payer
        self.payers = payers
        self.now = now
        self.today = timezone.localdate(now)
        self.problems = problems

    def member(self, entry: _Entry) -> RosterMember | None:
        self.entry = entry
        found = len(self.problems)
        member_id = self._text("member_id")
        family = self._text("family_name")
        given = tuple(self._text("given_names").split())
        birth_date = self._day("birth_date")
        if birth_date is not None and birth_date > self.today:
            self._problem(
                "birth_date", f"{self._name('birth_date')} {birth_date} is in the future."
            )
        gender = self._choice("gender", ADMINISTRATIVE_GENDERS)
        former_payer = self._former_payer()
        former_member_id = self._text("former_member_id")
        former_start = self._day("former_coverage_start")
        former_end = self._day("former_coverage_end")
        if former_start is not None and former_end is not None and former_end < former_start:
            self._problem(
                "former_coverage_end",
                f"{self._name('former_coverage_end')} {former_end} is before "
                f"{self._name('former_coverage_start')} {former_start}.",
            )
        new_start = self._day("new_coverage_start")
        consent = self._choice("consent", tuple(CONSENT_CHOICES))
        opted_in_at = self._opted_in_at()
        if (
            len(self.problems) > found
            # A value the reader could not find, and has reported already.
            or None in entry.values.values()
            or birth_date is None
            or former_payer is None
            or former_start is None
            or new_start is None
            or opted_in_at is None
        ):
            return None
        return RosterMember(
            line=entry.line,
            member_id=member_id,
            family=family,
            given=given,
            birth_date=birth_date,
            gender=gender,
            former_payer=former_payer,
            former_member_id=former_member_id,
            former_coverage_start=former_start,
            former_coverage_end=former_end,
            new_coverage_start=new_start,
            policy=CONSENT_CHOICES[consent],
            opted_in_at=opted_in_at,
        )

    def _problem(self, key: str, message: str) -> None:
        self.problems.append(
            RosterProblem(self.entry.line, self.entry.column(key), f"{self.entry.label}: {message}")
        )

    def _name(self, key: str) -> str:
        return self.entry.column(key)

    def _text(self, key: str) -> str:
        """Return the column's value; report it missing (unless optional) or too long."""
        value = self.entry.values.get(key)
        if value is None:
            return ""
        if not value and key not in _OPTIONAL:
            self._problem(key, f"{self._name(key)} is missing.")
        if _NOT_TEXT.search(value):
            self._problem(key, f"{self._name(key)} holds a control character; remove it.")
            return ""
        limit = _MAX_LENGTHS.get(key)
        if limit is not None and len(value) > limit:
            self._problem(key, f"{self._name(key)} is longer than {limit} characters.")
        return value

    def _day(self, key: str) -> date | None:
        value = self._text(key)
        if not value:
            return None
        day = iso_day(value)
        if day is None:
            self._problem(
                key, f"{self._name(key)} {value[:40]!r} is not a date written YYYY-MM-DD."
            )
        return day

    def _choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self._text(key)
        if value and value not in choices:
            self._problem(
                key, f"{self._name(key)} {value[:40]!r} is not one of {', '.join(choices)}."
            )
        return value

    def _opted_in_at(self) -> datetime | None:
        key = "opted_in_at"
        value = self._text(key)
        if not value:
            return None
        shape = _DATE_TIME.fullmatch(value)
        try:
            if shape is None:
                raise ValueError(value)
            moment = datetime.fromisoformat(value)
        except ValueError:
            self._problem(
                key,
                f"{self._name(key)} {value[:40]!r} is not a date-time such as "
                "2026-11-20T14:03:00-05:00.",
            )
            return None
        if shape["offset"] is None:
            self._problem(
                key,
                f"{self._name(key)} {value!r} has no UTC offset; write it with one, such as "
                "2026-11-20T14:03:00-05:00.",
            )
            return None
        if moment > self.now:
            self._problem(key, f"{self._name(key)} {value} is in the future.")
            return None
        return moment

    def _former_payer(self) -> Payer | None:
        key = "former_payer_npi"
        npi = self._text(key)
        if not npi:
            return None
        try:
            validate_npi(npi)
        except ValidationError as exc:
            self._problem(key, f"{self._name(key)} {npi[:40]!r} is not an NPI: {exc.messages[0]}")
            return None
        payer = self.payers.get(npi)
        if payer is None:
            self._problem(
                key, f"unknown former payer NPI {npi} — it is not in the hub's directory."
            )
        elif payer.pk == self.new_payer.pk:
            self._problem(key, f"NPI {npi} is your own plan; give the member's former payer.")
        elif payer.status != PayerStatus.PARTICIPATING:
            self._problem(
                key,
                f"{payer.name} (NPI {npi}) does not take part in the hub yet, so records "
                "cannot be asked of it.",
            )
        else:
            return payer
        return None
