"""A plan administrator's roster is read whole, or refused with every problem named by line
and column; whatever the bytes, the answer is a Roster or RosterRefused."""

import copy
import dataclasses
import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from exchange.bulk.roster import (
    CSV_COLUMNS,
    MAX_MEMBERS,
    MAX_PROBLEMS,
    Roster,
    RosterMember,
    RosterProblem,
    RosterRefused,
    roster_read,
)
from exchange.models import ConsentPolicy
from hub.models import PayerStatus
from tests.conftest import Tenant
from tests.factories import PayerFactory

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_CSV = (ROOT / "exchange" / "bulk" / "roster_example.csv").read_bytes()
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE_NDJSON = (FIXTURES / "roster_example.ndjson").read_bytes()
EXAMPLE_PARAMETERS = (FIXTURES / "roster_example_parameters.json").read_bytes()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# A valid NPI that no test payer has unless a test gives it one (Western Peaks in the demo).
WEST_NPI = "1367902453"
HEADER = EXAMPLE_CSV.decode().splitlines()[0]
ROWS = EXAMPLE_CSV.decode().splitlines()[1:]


def _read(north: Tenant, data: bytes | str, filename: str = "roster.csv") -> Roster:
    raw = data.encode() if isinstance(data, str) else data
    return roster_read(data=raw, filename=filename, new_payer=north.payer, now=NOW)


def _refused(north: Tenant, data: bytes | str, filename: str = "roster.csv") -> list[RosterProblem]:
    with pytest.raises(RosterRefused) as refused:
        _read(north, data, filename)
    return refused.value.problems


def _csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def _row(line: int = 2, **changes: str) -> str:
    """Return example row ``line`` (2 to 4) with some columns changed."""
    values = dict(zip(CSV_COLUMNS, ROWS[line - 2].split(","), strict=True))
    return ",".join({**values, **changes}.values())


def _without_line(member: RosterMember) -> RosterMember:
    return dataclasses.replace(member, line=0)


def test_the_example_roster_is_read_as_documented(north: Tenant, south: Tenant) -> None:
    roster = _read(north, EXAMPLE_CSV)
    assert roster.format == "csv"
    assert [member.line for member in roster.members] == [2, 3, 4]
    patricia, marcus, rosa = roster.members
    assert patricia == RosterMember(
        line=2,
        member_id="NSH-100201",
        family="Person",
        given=("Patricia", "Ann"),
        birth_date=date(1974, 12, 25),
        gender="female",
        former_payer=south.payer,
        former_member_id="SCH-55678",
        former_coverage_start=date(2021, 1, 1),
        former_coverage_end=date(2026, 12, 31),
        new_coverage_start=date(2027, 1, 1),
        policy=ConsentPolicy.SENSITIVE,
        opted_in_at=datetime(2026, 11, 20, 14, 3, tzinfo=timezone(timedelta(hours=-5))),
    )
    assert marcus.policy == ConsentPolicy.REGULAR
    assert rosa.former_coverage_end is None  # still covered at South: concurrent coverage


def test_csv_ndjson_and_parameters_give_the_same_members(north: Tenant, south: Tenant) -> None:
    from_csv = _read(north, EXAMPLE_CSV)
    from_ndjson = _read(north, EXAMPLE_NDJSON, "roster.ndjson")
    from_parameters = _read(north, EXAMPLE_PARAMETERS, "roster.JSON")
    assert (from_ndjson.format, from_parameters.format) == ("ndjson", "parameters")
    # MemberBundles are numbered through the file: two on the first line, one on the second.
    assert [member.line for member in from_ndjson.members] == [1, 2, 3]
    expected = [_without_line(member) for member in from_csv.members]
    assert [_without_line(member) for member in from_ndjson.members] == expected
    assert [_without_line(member) for member in from_parameters.members] == expected


def test_a_spreadsheet_s_csv_is_taken_as_it_comes(north: Tenant, south: Tenant) -> None:
    # A byte-order mark, columns in another order and capitalised, CRLF line ends, a
    # capitalised code, trailing empty cells and an empty row.
    columns = list(reversed(CSV_COLUMNS))
    rows = [dict(zip(CSV_COLUMNS, row.split(","), strict=True)) for row in ROWS]
    rows[0]["gender"] = "Female"
    lines = [",".join(name.upper() for name in columns)]
    lines += [",".join(row[name] for name in columns) + ",," for row in rows[:2]]
    lines += [",,,", ",".join(rows[2][name] for name in columns)]
    roster = _read(north, "\ufeff" + "\r\n".join(lines) + "\r\n")
    assert [_without_line(m) for m in roster.members] == [
        _without_line(m) for m in _read(north, EXAMPLE_CSV).members
    ]
    assert [member.line for member in roster.members] == [2, 3, 5]  # spreadsheet row numbers


def test_a_missing_column_is_one_problem_naming_it(north: Tenant, south: Tenant) -> None:
    header = HEADER.replace(",consent,", ",")
    rows = [row.replace(",everything,", ",").replace(",non_sensitive,", ",") for row in ROWS]
    assert _refused(north, _csv(*rows, header=header)) == [
        RosterProblem(0, "consent", "The roster has no consent column.")
    ]


def test_extra_and_repeated_columns_are_refused_by_name(north: Tenant, south: Tenant) -> None:
    problems = _refused(north, _csv(_row() + ",x,y", header=HEADER + ",Notes,member_id"))
    assert [(p.line, p.column) for p in problems] == [(1, "member_id"), (1, "notes")]
    assert "member_id appears more than once" in problems[0].message
    assert "'notes' is not a roster column" in problems[1].message


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("member_id", "", "Line 3: member_id is missing."),
        ("member_id", "M" * 101, "Line 3: member_id is longer than 100 characters."),
        ("family_name", "", "Line 3: family_name is missing."),
        ("given_names", " ", "Line 3: given_names is missing."),
        ("birth_date", "1974-13-01", "Line 3: birth_date '1974-13-01' is not a date written "),
        ("birth_date", "25/12/1974", "Line 3: birth_date '25/12/1974' is not a date written "),
        ("birth_date", "20261231", "Line 3: birth_date '20261231' is not a date written "),
        ("birth_date", "2026-12-02", "Line 3: birth_date 2026-12-02 is in the future."),
        ("gender", "f", "Line 3: gender 'f' is not one of male, female, other, unknown."),
        ("consent", "all", "Line 3: consent 'all' is not one of everything, non_sensitive."),
        ("former_member_id", "", "Line 3: former_member_id is missing."),
        ("former_coverage_start", "", "Line 3: former_coverage_start is missing."),
        ("former_coverage_end", "2019-05-31", "Line 3: former_coverage_end 2019-05-31 is before"),
        ("new_coverage_start", "2027-02-30", "Line 3: new_coverage_start '2027-02-30' is not a "),
        ("opted_in_at", "", "Line 3: opted_in_at is missing."),
        ("opted_in_at", "2026-11-21", "Line 3: opted_in_at '2026-11-21' is not a date-time"),
        ("opted_in_at", "2026-11-21T09:30:00", "Line 3: opted_in_at '2026-11-21T09:30:00' has no"),
        ("opted_in_at", "2026-12-01T12:00:01Z", "Line 3: opted_in_at 2026-12-01T12:00:01Z is in"),
        ("former_payer_npi", "", "Line 3: former_payer_npi is missing."),
        ("former_payer_npi", "12345", "Line 3: former_payer_npi '12345' is not an NPI: An NPI "),
        # Digits of another script are digits to str.isdigit(), not to an NPI.
        ("former_payer_npi", "²" * 10, "Line 3: former_payer_npi '²²²²²²²²²²' is not an NPI: An "),
        ("former_payer_npi", "1245319598", "Line 3: former_payer_npi '1245319598' is not an NPI:"),
        (
            "former_payer_npi",
            WEST_NPI,
            f"Line 3: unknown former payer NPI {WEST_NPI} — it is not in the hub's directory.",
        ),
        ("former_payer_npi", "1234567893", "Line 3: NPI 1234567893 is your own plan;"),
    ],
)
def test_each_refused_value_names_its_line_and_column(
    north: Tenant, south: Tenant, column: str, value: str, message: str
) -> None:
    problems = _refused(north, _csv(_row(2), _row(3, **{column: value}), _row(4)))
    assert [(p.line, p.column) for p in problems] == [(3, column)]
    assert problems[0].message.startswith(message), problems[0].message


def test_a_former_payer_not_taking_part_yet_is_refused(north: Tenant, south: Tenant) -> None:
    PayerFactory(
        slug="west", name="Western Peaks Health", npi=WEST_NPI, status=PayerStatus.ONBOARDING
    )
    (problem,) = _refused(north, _csv(_row(2, former_payer_npi=WEST_NPI)))
    assert problem == RosterProblem(
        2,
        "former_payer_npi",
        f"Line 2: Western Peaks Health (NPI {WEST_NPI}) does not take part in the hub yet, so "
        "records cannot be asked of it.",
    )


def test_every_problem_of_every_line_is_reported_at_once(north: Tenant, south: Tenant) -> None:
    problems = _refused(
        north,
        _csv(
            _row(2, gender="x", consent="some"),
            _row(3),
            "only,three,values",
            _row(4, birth_date="1952-02-30"),
        ),
    )
    assert [(p.line, p.column) for p in problems] == [
        (2, "gender"),
        (2, "consent"),
        (4, ""),
        (5, "birth_date"),
    ]
    assert problems[2].message == "Line 4 has 3 values; the header names 12 columns."


def test_a_member_listed_twice_for_one_former_payer_is_refused(
    north: Tenant, south: Tenant
) -> None:
    (problem,) = _refused(north, _csv(_row(2), _row(3), _row(4), _row(2)))
    assert problem == RosterProblem(5, "member_id", "Line 5 repeats the member of line 2.")


def test_one_member_may_be_asked_of_several_former_payers_but_is_one_person(
    north: Tenant, south: Tenant
) -> None:
    PayerFactory(slug="west", name="Western Peaks Health", npi=WEST_NPI)
    again = _row(2, former_payer_npi=WEST_NPI, former_member_id="WPH-1")
    assert len(_read(north, _csv(_row(2), again)).members) == 2
    (problem,) = _refused(
        north, _csv(_row(2), _row(2, former_payer_npi=WEST_NPI, birth_date="1974-12-26"))
    )
    assert (problem.line, problem.column) == (3, "member_id")
    assert "gives the member id of line 2 to a person with another name" in problem.message


def test_the_list_of_problems_is_capped_and_says_how_many_more(
    north: Tenant, south: Tenant
) -> None:
    rows = [_row(2, member_id=f"M{n}", gender="?") for n in range(MAX_PROBLEMS + 50)]
    problems = _refused(north, _csv(*rows))
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == RosterProblem(
        0, "", "There are 50 more problems; fix these and upload it again."
    )


def test_a_roster_beyond_the_limit_is_refused_as_a_whole(north: Tenant, south: Tenant) -> None:
    rows = [_row(2, member_id=f"M{n}") for n in range(MAX_MEMBERS + 1)]
    assert _refused(north, _csv(*rows)) == [
        RosterProblem(
            0,
            "",
            "The roster has 20,001 members; at most 20,000 are taken at once. Split it into "
            "several files.",
        )
    ]


@pytest.mark.parametrize(
    ("data", "filename", "problem"),
    [
        (EXAMPLE_CSV, "roster.xlsx", (0, "The roster must be a .csv, .ndjson or .json file.")),
        (EXAMPLE_CSV, "roster", (0, "The roster must be a .csv, .ndjson or .json file.")),
        (b"", "roster.csv", (0, "The file is empty.")),
        (b" \r\n\n", "roster.ndjson", (0, "The file is empty.")),
        (HEADER.encode() + b"\n", "roster.csv", (0, "The roster lists no members.")),
        (
            (_csv(_row(2)) + "NSH-1,Mu\xf1oz").encode("latin-1"),
            "roster.csv",
            (3, "Line 3 has a byte that is not UTF-8 text; save the file as UTF-8 (in a "),
        ),
        (
            _csv(_row(2), '"unclosed,' + _row(3)).encode(),
            "roster.csv",
            (3, "Line 3 is not valid CSV (unexpected end of data)."),
        ),
        (b"\n{not json\n", "roster.ndjson", (2, "Line 2 is not valid JSON (")),
        (b"[" * 100_000, "roster.json", (0, "The file is JSON nested too deeply to read.")),
        (b'{"resourceType": "Bundle"}', "roster.json", (0, "The file is not a FHIR Parameters")),
        (b'[{"resourceType": "Parameters"}]', "roster.ndjson", (1, "Line 1 is not a FHIR Param")),
        (b'{"resourceType": "Parameters"}', "roster.json", (0, "The file holds no MemberBundle.")),
        (
            b'{"resourceType": "Parameters", "parameter": [{"name": "MemberPatient"}]}',
            "roster.json",
            (0, "The file has a parameter 'MemberPatient'; only MemberBundle is taken."),
        ),
    ],
)
def test_a_file_that_is_no_roster_says_why(
    north: Tenant, south: Tenant, data: bytes, filename: str, problem: tuple[int, str]
) -> None:
    problems = _refused(north, data, filename)
    assert (problems[0].line, problems[0].message[: len(problem[1])]) == problem


# --- NDJSON: MemberBundles --------------------------------------------------------------


def _bundles() -> list[dict[str, Any]]:
    """Return the example's MemberBundles (PDex shape, tests/exchange/bulk/fixtures)."""
    return copy.deepcopy(json.loads(EXAMPLE_PARAMETERS)["parameter"])


def _part(bundle: dict[str, Any], name: str) -> dict[str, Any]:
    return next(part for part in bundle["part"] if part["name"] == name)


def _ndjson(*bundles: dict[str, Any]) -> bytes:
    return b"".join(
        json.dumps({"resourceType": "Parameters", "parameter": [bundle]}).encode() + b"\n"
        for bundle in bundles
    )


def _bundle_refused(north: Tenant, change: Any) -> list[RosterProblem]:
    """Change the second MemberBundle with ``change`` and return the problems reported."""
    bundles = _bundles()
    change(bundles[1])
    return _refused(north, _ndjson(*bundles), "roster.ndjson")


@pytest.mark.parametrize(
    ("change", "column", "message"),
    [
        (
            lambda b: _part(b, "CoverageToMatch")["resource"].pop("payor"),
            "CoverageToMatch.payor[0].identifier",
            "MemberBundle 2: CoverageToMatch has no payor identifier.",
        ),
        (
            lambda b: _part(b, "CoverageToMatch")["resource"]["payor"][0]["identifier"].update(
                system="urn:payer-hub:payer-id"
            ),
            "CoverageToMatch.payor[0].identifier",
            "MemberBundle 2: CoverageToMatch's payor is not named by NPI;",
        ),
        (
            lambda b: b["part"].remove(_part(b, "CoverageToLink")),
            "CoverageToLink",
            "MemberBundle 2: there is no CoverageToLink.",
        ),
        (
            lambda b: b["part"].append(_part(b, "Consent")),
            "Consent",
            "MemberBundle 2: Consent appears more than once.",
        ),
        (
            lambda b: _part(b, "MemberPatient")["resource"].update(resourceType="Person"),
            "MemberPatient",
            "MemberBundle 2: MemberPatient is not a Patient resource.",
        ),
        (
            lambda b: b["part"].append({"name": "Coverage", "resource": {}}),
            "Coverage",
            "MemberBundle 2: the part 'Coverage' is not one of MemberPatient, CoverageToMatch,",
        ),
        (
            lambda b: _part(b, "Consent")["resource"]["policy"][0].update(uri="urn:everything"),
            "Consent.policy[0].uri",
            "MemberBundle 2: the Consent's policy 'urn:everything' is not an HRex consent policy",
        ),
        (
            lambda b: _part(b, "Consent")["resource"].update(status="inactive"),
            "Consent.status",
            "MemberBundle 2: the Consent is not active.",
        ),
        (
            lambda b: _part(b, "Consent")["resource"].pop("dateTime"),
            "Consent.dateTime",
            "MemberBundle 2: Consent.dateTime is missing.",
        ),
        (
            lambda b: _part(b, "MemberPatient")["resource"].update(birthDate="1988-03"),
            "MemberPatient.birthDate",
            "MemberBundle 2: MemberPatient.birthDate '1988-03' is not a date written YYYY-MM-DD.",
        ),
        (
            lambda b: _part(b, "MemberPatient")["resource"]["name"][0].pop("given"),
            "MemberPatient.name.given",
            "MemberBundle 2: MemberPatient.name.given is missing.",
        ),
        (
            lambda b: _part(b, "CoverageToLink")["resource"]["period"].pop("start"),
            "CoverageToLink.period.start",
            "MemberBundle 2: CoverageToLink.period.start is missing.",
        ),
        (
            lambda b: _part(b, "CoverageToMatch")["resource"]["period"].update(end="2019-01-01"),
            "CoverageToMatch.period.end",
            "MemberBundle 2: CoverageToMatch.period.end 2019-01-01 is before "
            "CoverageToMatch.period.start 2019-06-01.",
        ),
    ],
)
def test_each_member_bundle_problem_names_the_bundle_and_element(
    north: Tenant, south: Tenant, change: Any, column: str, message: str
) -> None:
    problems = _bundle_refused(north, change)
    assert [(p.line, p.column) for p in problems] == [(2, column)]
    assert problems[0].message.startswith(message), problems[0].message


def test_member_ids_come_from_coverage_to_link_else_member_patient(
    north: Tenant, south: Tenant
) -> None:
    bundles = _bundles()
    link = _part(bundles[0], "CoverageToLink")["resource"]
    # The MB-typed identifier is the member's card; another one may come first.
    link["identifier"].insert(0, {"system": "urn:subscriber", "value": "SUB-1"})
    del _part(bundles[1], "CoverageToLink")["resource"]["identifier"]
    # A dateTime period (FHIR Period) counts by its day.
    _part(bundles[2], "CoverageToLink")["resource"]["period"]["start"] = "2026-10-01T00:00:00Z"
    roster = _read(north, _ndjson(*bundles), "roster.ndjson")
    assert [_without_line(m) for m in roster.members] == [
        _without_line(m) for m in _read(north, EXAMPLE_CSV).members
    ]


def test_problems_of_ndjson_lines_and_bundles_are_told_apart(north: Tenant, south: Tenant) -> None:
    bundles = _bundles()
    del _part(bundles[2], "MemberPatient")["resource"]["gender"]
    data = _ndjson(*bundles[:2]) + b"not json\n" + _ndjson(bundles[2])
    problems = _refused(north, data, "roster.ndjson")
    assert [(p.line, p.column, p.message[:22]) for p in problems] == [
        (3, "", "Line 3 is not valid JS"),
        (3, "MemberPatient.gender", "MemberBundle 3: Member"),
    ]


def _wrong_values() -> list[Any]:
    return [None, 0, 1.5, True, "", "x", [], [None], {}, {"x": 1}, [[[]]]]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    changed = copy.deepcopy(document)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return changed


def test_any_json_shape_is_read_or_refused_never_crashes(north: Tenant, south: Tenant) -> None:
    document = json.loads(EXAMPLE_PARAMETERS)
    outcomes = {"read": 0, "refused": 0}
    for path in _paths(document):
        for value in _wrong_values():
            data = json.dumps(_replaced(document, path, value)).encode()
            try:
                _read(north, data, "roster.json")
                outcomes["read"] += 1
            except RosterRefused as refused:
                assert refused.problems and all(p.message for p in refused.problems)
                outcomes["refused"] += 1
    assert outcomes["read"] and outcomes["refused"]


def test_any_bytes_are_read_or_refused_never_crashes(north: Tenant, south: Tenant) -> None:
    randomly = random.Random(12)
    samples = [EXAMPLE_CSV, EXAMPLE_NDJSON, EXAMPLE_PARAMETERS]
    for _ in range(300):
        sample = bytearray(randomly.choice(samples))
        for _ in range(randomly.randint(1, 8)):
            sample[randomly.randrange(len(sample))] = randomly.randrange(256)
        for filename in ("r.csv", "r.ndjson", "r.json"):
            try:
                _read(north, bytes(sample), filename)
            except RosterRefused as refused:
                assert refused.problems
