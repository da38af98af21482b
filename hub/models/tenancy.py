"""The tenant (Payer), its people, and the base every tenant-owned model builds on."""

from collections.abc import Sequence
from typing import Any, Self, TypeVar, cast

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q, UniqueConstraint
from django.db.models.constraints import BaseConstraint
from django.db.models.sql import Query

from hub.models.tenant_scope import PAYER_FIELD, TenantQuery
from hub.validators import validate_npi, validate_payer_url

_Model = TypeVar("_Model", bound=models.Model)


class PayerStatus(models.TextChoices):
    PARTICIPATING = "participating", "Participating"
    ONBOARDING = "onboarding", "Onboarding"
    INVITED = "invited", "Invited"
    # Set by a hub operator: the payer's members and systems start no new exchange, and are
    # told so; requests already under way finish (operator/services.py payer_suspend).
    SUSPENDED = "suspended", "Suspended"


class DeliveryMode(models.TextChoices):
    HUB_REPOSITORY = "hub_repository", "Collect from the hub's SFTP repository"
    PUSH_SFTP = "push_sftp", "Push to our own SFTP server"


class PlanType(models.TextChoices):
    """The payers CMS-0057-F impacts (seed 003)."""

    MEDICARE_ADVANTAGE = "medicare_advantage", "Medicare Advantage"
    MEDICAID = "medicaid", "Medicaid"
    CHIP = "chip", "CHIP"
    QHP = "qhp", "Qualified Health Plan (FFE)"
    COMMERCIAL = "commercial", "Commercial"


class Payer(models.Model):
    """A health plan: the hub's tenant. Data holder, requester, or (usually) both."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True, help_text="Used in URLs: /p/<slug>/")
    npi = models.CharField("NPI", max_length=10, blank=True, validators=[validate_npi])
    payer_identifier = models.CharField(
        "payer id",
        max_length=40,
        blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9-]+$", "Letters, digits and dashes only.")],
        help_text="The payer id used in claims (e.g. the CMS or clearinghouse payer id).",
    )
    status = models.CharField(
        max_length=20, choices=PayerStatus.choices, default=PayerStatus.ONBOARDING
    )
    states = models.JSONField(
        default=list, blank=True, help_text="Two-letter codes of the states served."
    )
    plan_types = models.JSONField(default=list, blank=True)
    contact_name = models.CharField(max_length=200, blank=True)
    contact_email = models.EmailField(blank=True)
    delivery_mode = models.CharField(
        max_length=20, choices=DeliveryMode.choices, default=DeliveryMode.HUB_REPOSITORY
    )
    client_jwks_url = models.CharField(
        "JWKS URL of the payer's own clients",
        max_length=500,
        blank=True,
        validators=[validate_payer_url],
        help_text="Keys the payer's systems sign with when they call the hub (SMART Backend Services).",
    )
    # Recurring pulls (exchange/schedules.py). CMS-0057-F: concurrent payers are asked again
    # "at least quarterly" while both coverages last, so no more than 92 days apart.
    concurrent_refresh_days = models.PositiveSmallIntegerField(
        "days between pulls from a concurrent payer",
        default=90,
        validators=[MinValueValidator(7), MaxValueValidator(92)],
        help_text="At least quarterly (CMS-0057-F): 7 to 92 days.",
    )
    # Claims keep arriving after coverage ends (run-off): one more pull this long after.
    run_off_days = models.PositiveSmallIntegerField(
        "days after coverage ends for the run-off pull",
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text="One more pull this many days after a previous coverage ends (1 to 365).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["npi"], condition=~Q(npi=""), name="payer_npi_unique"),
            models.UniqueConstraint(
                fields=["payer_identifier"],
                condition=~Q(payer_identifier=""),
                name="payer_identifier_unique",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def exchange_suspended_sentence(self) -> str:
        """What members, administrators and payer systems are told while this payer is
        suspended: the hub's team stopped new work for it; requests under way still finish."""
        return (
            f"{self.name}'s exchange through the hub is suspended: no new request can start "
            "until the hub's team lifts the suspension."
        )


class Role(models.TextChoices):
    MEMBER = "member", "Member"
    PLAN_ADMIN = "plan_admin", "Plan administrator"


class User(AbstractUser):
    """A person: a member or plan administrator of exactly one payer, or a hub operator.

    Hub operators are Django staff with no payer. Members and administrators are
    bound to (payer, OIDC subject): the same subject at another payer is another person.
    """

    payer = models.ForeignKey(
        Payer, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    role = models.CharField(max_length=20, choices=Role.choices, blank=True)
    oidc_subject = models.CharField(max_length=255, blank=True)
    # A member's demographics as their payer's identity provider asserts them at each
    # sign-in (IdentityProvider.claim_*); they become HRex MemberPatient in $member-match.
    birth_date = models.DateField(null=True, blank=True)
    gender = models.CharField(max_length=10, blank=True)
    plan_member_id = models.CharField("member id at the payer", max_length=100, blank=True)

    class Meta:
        indexes = [
            # An opt-in or a roster finds its member by member id (exchange/enrollment.py),
            # and sign-in claims such a member by it (members/sign_in.py).
            models.Index(fields=["payer", "plan_member_id"], name="user_member_id_per_payer")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["payer", "oidc_subject"],
                condition=~Q(oidc_subject=""),
                name="user_subject_unique_per_payer",
            ),
            models.CheckConstraint(
                condition=(Q(payer__isnull=True) & Q(role=""))
                | (Q(payer__isnull=False) & Q(role__in=Role.values)),
                name="user_has_payer_and_role_or_neither",
            ),
            # A member's or plan administrator's account never gains the operator console
            # by a change of flags: the console's staff belong to no payer.
            models.CheckConstraint(
                condition=Q(is_staff=False) | Q(payer__isnull=True),
                name="user_staff_only_without_payer",
            ),
        ]

    @property
    def is_member(self) -> bool:
        return self.payer_id is not None and self.role == Role.MEMBER

    @property
    def is_plan_admin(self) -> bool:
        return self.payer_id is not None and self.role == Role.PLAN_ADMIN


class TenantQuerySet(models.QuerySet[_Model]):
    """Query sets of tenant-owned rows: scoped with ``for_payer``, or marked ``across_payers``.

    An unscoped, unmarked query raises UnscopedTenantQuery when it is evaluated
    (hub/models/tenant_scope.py); there is no convenient unscoped default (STYLE.md #2).
    """

    def __init__(
        self,
        model: type[_Model] | None = None,
        query: Query | None = None,
        using: str | None = None,
        hints: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, query if query is not None else TenantQuery(model), using, hints)

    def for_payer(self, payer: Payer | int) -> Self:
        """Return the rows of ``payer`` only: the way views, selectors and tasks read."""
        payer_id = payer.pk if isinstance(payer, Payer) else payer
        if payer_id is None:
            raise ValueError("for_payer() needs a saved payer or a payer id, not None")
        return self.filter(payer_id=payer_id)

    def across_payers(self, *, reason: str) -> Self:
        """Return this query allowed to read every payer's rows; ``reason`` says why, to the
        reader of the call site (the reaper, a purge, a report on requests to us)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("across_payers() needs a reason: say why this query reads every payer")
        clone = self.all()
        cast(TenantQuery, clone.query).cross_payer_reason = reason.strip()
        return clone

    def _add_hints(self, **hints: Any) -> None:
        super()._add_hints(**hints)  # type: ignore[misc]  # private, not in django-stubs
        # Django names the row a relation starts from when it reads the relation
        # (``consent.exchange_requests``) or prefetches it for loaded rows, then filters to
        # that row's related rows, a filter nobody can take off. A row loaded (or saved)
        # came through a checked query or names its payer itself, so these rows are reached
        # from it, not from the whole table; a hand-built ``Model(pk=...)`` is not trusted.
        instance = hints.get("instance")
        if isinstance(instance, TenantOwned) and not instance._state.adding:
            cast(TenantQuery, self.query).reached_from = instance._meta.label

    def delete(self) -> tuple[int, dict[str, int]]:
        # Rows Django need not load (no signals, no cascades) go in a DELETE query that
        # skips the compile-time check, so the scope is checked before anything is collected.
        cast(TenantQuery, self.query).scope_require()
        return super().delete()


def _within_payer(constraint: BaseConstraint) -> BaseConstraint:
    """Return ``constraint`` with the payer among its fields, if it is a unique constraint."""
    if not isinstance(constraint, UniqueConstraint) or not constraint.fields:
        return constraint
    if PAYER_FIELD in constraint.fields:
        return constraint
    _, args, kwargs = constraint.deconstruct()
    return UniqueConstraint(*args, **{**kwargs, "fields": (*constraint.fields, PAYER_FIELD)})


class TenantOwned(models.Model):
    """Base of every tenant-owned model: a non-null, indexed payer (ARCHITECTURE.md, Citus-ready).

    Django's own uniqueness validation (``full_clean``, model forms) asks the default
    manager whether another row holds the same values. Here it asks among the row's own
    payer's rows, so validation is scoped like every other read and tells nobody whether
    another payer has a row with that value; a clash across payers of a column unique on
    the whole table (a random kid or state digest) is left to the database to refuse. The
    payer is set by the hub, never typed into a form, so it takes part in every check.
    """

    payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+", db_index=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True

    def _get_unique_checks(
        self, exclude: Any = None, include_meta_constraints: bool = False
    ) -> tuple[list[tuple[type[models.Model], tuple[str, ...]]], list[Any]]:
        # Private in Django and absent from django-stubs, but what model forms call too.
        unique_checks, date_checks = super()._get_unique_checks(  # type: ignore[misc]
            exclude=set(exclude or ()) - {PAYER_FIELD},
            include_meta_constraints=include_meta_constraints,
        )
        scoped = [
            (model, fields if PAYER_FIELD in fields else (*fields, PAYER_FIELD))
            for model, fields in unique_checks
        ]
        return scoped, date_checks

    def get_constraints(self) -> list[tuple[type[models.Model], Sequence[BaseConstraint]]]:
        return [
            (model, [_within_payer(constraint) for constraint in constraints])
            for model, constraints in super().get_constraints()
        ]

    def validate_constraints(self, exclude: Any = None) -> None:
        super().validate_constraints(exclude=set(exclude or ()) - {PAYER_FIELD})

    def unique_error_message(self, model_class: type[Self], unique_check: Any) -> ValidationError:
        # The payer was added to the check above; the person reading the error never chose it.
        named = tuple(name for name in unique_check if name != PAYER_FIELD) or tuple(unique_check)
        return super().unique_error_message(model_class, named)
