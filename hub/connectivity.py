"""The answer of every *Test* button: what was tried against a payer's system, step by step.

The plan-admin portal shows a report as a list of plain-language lines, so each check
(FHIR endpoint, identity provider, client JWKS, SFTP destination) says what it did and
what went wrong in words an administrator can act on, never a stack trace.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CheckStep:
    """One thing tried: "Read /metadata", and what came of it."""

    name: str
    ok: bool
    detail: str


@dataclass
class ConnectivityReport:
    """The steps of one check, in order; it succeeded when every step did."""

    subject: str
    steps: list[CheckStep] = field(default_factory=list)

    def passed(self, name: str, detail: str) -> None:
        self.steps.append(CheckStep(name=name, ok=True, detail=detail))

    def failed(self, name: str, detail: str) -> None:
        self.steps.append(CheckStep(name=name, ok=False, detail=detail))

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def as_dict(self) -> dict[str, object]:
        """Return the report as JSON-ready data (kept on the settings row, shown in the portal)."""
        return {
            "subject": self.subject,
            "ok": self.ok,
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail} for s in self.steps],
        }
