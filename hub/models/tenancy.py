"""The tenant (Payer), its people, and the base every tenant-owned model builds on."""

from typing import TypeVar

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from hub.validators import validate_npi, validate_payer_url

_Model = TypeVar("_Model", bound=models.Model)


class PayerStatus(models.TextChoices):
    PARTICIPATING = "participating", "Participating"
    ONBOARDING = "onboarding", "Onboarding"
    INVITED = "invited", "Invited"


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
        ]

    @property
    def is_member(self) -> bool:
        return self.payer_id is not None and self.role == Role.MEMBER

    @property
    def is_plan_admin(self) -> bool:
        return self.payer_id is not None and self.role == Role.PLAN_ADMIN


class TenantQuerySet(models.QuerySet[_Model]):
    """Query sets of tenant-owned rows; ``for_payer`` is the way views and selectors read."""

    def for_payer(self, payer: Payer | int) -> "TenantQuerySet[_Model]":
        payer_id = payer.pk if isinstance(payer, Payer) else payer
        return self.filter(payer_id=payer_id)


class TenantOwned(models.Model):
    """Base of every tenant-owned model: a non-null, indexed payer (ARCHITECTURE.md, Citus-ready)."""

    payer = models.ForeignKey(Payer, on_delete=models.PROTECT, related_name="+", db_index=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True
