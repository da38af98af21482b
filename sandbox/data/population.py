"""Derive a payer's members from a shared, seeded population of people.

Every person is a pure function of (seed, index), so two sandboxes started with
the same seed share people. Whether, and when, a person is covered by a payer is
a pure function of (seed, payer name, index) against a person-level switch date:
a payer in role ``former`` covered the person until the day before the switch, one
in role ``new`` from the switch on, one in role ``continuing`` throughout. So a
person who is ``former`` at A and ``new`` at B moved from A to B with periods that
fit, and ``continuing`` overlaps anything else (concurrent coverage).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass

from sandbox.organizations import PayerIdentity

ROLE_FORMER = "former"
ROLE_NEW = "new"
ROLE_CONTINUING = "continuing"
ROLE_NONE = "none"

DEMO_PASSWORD = "sandbox-demo"  # noqa: S105 - documented demo credential for every account
ADMIN_USERNAME = "admin"

_FEMALE = [
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Lisa",
    "Nancy",
    "Betty",
    "Sandra",
    "Margaret",
    "Ashley",
    "Kimberly",
    "Emily",
    "Donna",
    "Michelle",
    "Carol",
    "Amanda",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Rebecca",
    "Sharon",
    "Laura",
    "Cynthia",
    "Amy",
    "Angela",
    "Maria",
    "Ana",
    "Sofia",
    "Aaliyah",
    "Mei",
    "Priya",
    "Fatima",
    "Keisha",
]
_MALE = [
    "James",
    "Robert",
    "John",
    "Michael",
    "David",
    "William",
    "Richard",
    "Joseph",
    "Thomas",
    "Christopher",
    "Charles",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Donald",
    "Steven",
    "Andrew",
    "Paul",
    "Joshua",
    "Kenneth",
    "Kevin",
    "Brian",
    "George",
    "Timothy",
    "Ronald",
    "Jason",
    "Edward",
    "Jose",
    "Luis",
    "Carlos",
    "Wei",
    "Raj",
    "Omar",
    "Darnell",
    "Hiroshi",
    "Ahmed",
    "Malik",
    "Dmitri",
]
_FAMILY = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Patel",
    "Kim",
    "Okafor",
    "Cohen",
    "Novak",
    "Schmidt",
    "Rossi",
    "Yamamoto",
    "Singh",
    "Kowalski",
    "Haddad",
    "Mensah",
    "Olsen",
    "Ivanova",
    "Silva",
]
_PLACES = (
    ("Springfield", "IL", "627"),
    ("Columbus", "OH", "432"),
    ("Austin", "TX", "787"),
    ("Tampa", "FL", "336"),
    ("Phoenix", "AZ", "850"),
    ("Raleigh", "NC", "276"),
    ("Denver", "CO", "802"),
    ("Albany", "NY", "122"),
    ("Fresno", "CA", "937"),
    ("Madison", "WI", "537"),
)
_STREETS = [
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "River",
]


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in parts))  # noqa: S311 - synthetic data only


def _number(*parts: object, digits: int) -> str:
    raw = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return f"{int.from_bytes(raw[:8], 'big') % 10**digits:0{digits}d}"


@dataclass(frozen=True, slots=True)
class Person:
    """A human being in the seeded population, the same at every payer."""

    key: str
    given: tuple[str, ...]
    family: str
    gender: str
    birth_date: dt.date
    line: str
    city: str
    state: str
    postal_code: str
    phone: str
    history_start: dt.date
    switch_date: dt.date


@dataclass(frozen=True, slots=True)
class Member:
    """A person as a member of one payer."""

    index: int
    person: Person
    patient_id: str
    member_number: str
    card_number: str
    username: str
    role: str
    coverage_start: dt.date
    coverage_end: dt.date | None
    showcase: bool = False
    note: str = ""

    @property
    def coverage_active(self) -> bool:
        """Return whether the member is still covered."""
        return self.coverage_end is None


def person_at(seed: str, index: int, as_of: dt.date) -> Person:
    """Return person number index of the population of seed."""
    rng = _rng("person", seed, index)
    gender = rng.choice(("female", "male"))
    names = _FEMALE if gender == "female" else _MALE
    given = (rng.choice(names),) + ((rng.choice(names),) if rng.random() < 0.5 else ())
    birth = as_of.replace(month=1, day=1) - dt.timedelta(days=rng.randint(20 * 365, 80 * 365))
    city, state, zip3 = rng.choice(_PLACES)
    history_start = as_of - dt.timedelta(days=rng.randint(6 * 365, 9 * 365))
    return Person(
        key=f"person-{index:06d}",
        given=given,
        family=rng.choice(_FAMILY),
        gender=gender,
        birth_date=birth,
        line=f"{rng.randint(10, 9999)} {rng.choice(_STREETS)} St",
        city=city,
        state=state,
        postal_code=f"{zip3}{rng.randint(0, 99):02d}",
        phone=f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        history_start=history_start,
        switch_date=as_of - dt.timedelta(days=rng.randint(60, 3 * 365)),
    )


def role_at(seed: str, payer_name: str, index: int) -> str:
    """Return the role the payer called payer_name plays for person index."""
    roll = _rng("role", seed, payer_name, index).random()
    if roll < 0.30:
        return ROLE_FORMER
    if roll < 0.60:
        return ROLE_NEW
    if roll < 0.85:
        return ROLE_CONTINUING
    return ROLE_NONE


def coverage_period(person: Person, role: str) -> tuple[dt.date, dt.date | None]:
    """Return (start, end) of the coverage a payer in role gives person."""
    if role == ROLE_FORMER:
        return person.history_start, person.switch_date - dt.timedelta(days=1)
    if role == ROLE_NEW:
        return person.switch_date, None
    return person.history_start, None


def _showcase_members(identity: PayerIdentity, as_of: dt.date) -> list[Member]:
    """Return the fixed members every sandbox holds: the IG example member and a duplicate."""
    start = as_of - dt.timedelta(days=7 * 365)
    patricia = Person(
        key="person-hrex-example",
        given=("Patricia", "Ann"),
        family="Person",
        gender="female",
        birth_date=dt.date(1974, 12, 25),
        line="123 Main St",
        city="Springfield",
        state="IL",
        postal_code="62701",
        phone="555-201-0001",
        history_start=start,
        switch_date=as_of,
    )
    twin = Person(
        key="person-duplicate-enrollment",
        given=("Casey",),
        family="Lee",
        gender="female",
        birth_date=dt.date(1988, 3, 14),
        line="9 Cedar St",
        city="Columbus",
        state="OH",
        postal_code="43201",
        phone="555-201-0002",
        history_start=start,
        switch_date=as_of,
    )
    # The HRex example request (CoverageToMatch identifier DH10001235) and the
    # HRex example response (MemberIdentifier 55678, MemberId Patient/pat1) name this member.
    members = [
        Member(
            -1,
            patricia,
            "pat1",
            "55678",
            "DH10001235",
            "patricia.person",
            ROLE_CONTINUING,
            start,
            None,
            showcase=True,
            note="the HRex/Inferno $member-match example member",
        ),
    ]
    # A duplicate enrollment: two records, one card; $member-match must answer 422.
    card = f"{identity.member_prefix}DUP0001"
    for suffix in ("a", "b"):
        members.append(
            Member(
                -2,
                twin,
                f"dup1{suffix}",
                f"{identity.member_prefix}DUP1{suffix.upper()}",
                card,
                f"casey.lee.{suffix}",
                ROLE_CONTINUING,
                start,
                None,
                showcase=True,
                note="duplicate enrollment: $member-match finds two records (422)",
            )
        )
    return members


class Population:
    """The members of one payer, indexed for sign-in and member matching."""

    def __init__(self, *, identity: PayerIdentity, seed: str, size: int, as_of: dt.date) -> None:
        self.identity = identity
        self.seed = seed
        self.as_of = as_of
        self.members: list[Member] = _showcase_members(identity, as_of)
        index = 0
        while len(self.members) < size:
            role = role_at(seed, identity.name, index)
            if role != ROLE_NONE:
                self.members.append(self._member(index, role))
            index += 1
        self._by_patient = {m.patient_id: m for m in self.members}
        self._by_username = {m.username: m for m in self.members}
        self._by_demographics: dict[tuple[str, str, str], list[Member]] = {}
        for member in self.members:
            self._by_demographics.setdefault(demographic_key(member.person), []).append(member)

    def _member(self, index: int, role: str) -> Member:
        person = person_at(self.seed, index, self.as_of)
        start, end = coverage_period(person, role)
        prefix = self.identity.member_prefix
        number = prefix + _number("member", self.seed, self.identity.name, index, digits=9)
        return Member(
            index=index,
            person=person,
            patient_id=f"{prefix.lower()}{index:06d}",
            member_number=number,
            card_number=f"{number}01",
            username=f"{person.given[0]}.{person.family}{index}".lower(),
            role=role,
            coverage_start=start,
            coverage_end=end,
        )

    def by_patient_id(self, patient_id: str) -> Member | None:
        """Return the member whose Patient id is patient_id."""
        return self._by_patient.get(patient_id)

    def by_username(self, username: str) -> Member | None:
        """Return the member who signs in as username."""
        return self._by_username.get(username.strip().lower())

    def candidates(self, family: str, birth_date: str, gender: str) -> list[Member]:
        """Return the members with this family name, birth date and gender."""
        return list(self._by_demographics.get((family.strip().lower(), birth_date, gender), []))

    def peer_roles(self, member: Member, peers: Iterable[str]) -> dict[str, str]:
        """Return the role each peer payer plays for this member's person."""
        if member.showcase:
            return {}
        return {peer: role_at(self.seed, peer, member.index) for peer in peers}


def demographic_key(person: Person) -> tuple[str, str, str]:
    """Return the key members are looked up by in $member-match."""
    return (person.family.lower(), person.birth_date.isoformat(), person.gender)
