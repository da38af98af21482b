"""Fail-closed tenant resolution (STYLE.md #2; ARCHITECTURE.md "Security model").

The tenant is the payer named in the URL (``/p/<payer_slug>/...``). A signed-in
person reaches it only if they belong to that payer in the required role; anyone
else gets a 404, as for an object of another payer — the hub never confirms that
another tenant's object exists.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponseBase
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.views import APIView

from hub.models import Payer, Role, TenantQuerySet, User

_P = ParamSpec("_P")
_M = TypeVar("_M", bound=Model)


def payer_for_user(user: Any, payer_slug: str, *, role: Role) -> Payer:
    """Return the payer named by ``payer_slug`` if ``user`` belongs to it in ``role``; else 404."""
    if not isinstance(user, User) or user.payer_id is None or user.role != role:
        raise Http404("No such page.")
    payer = Payer.objects.filter(slug=payer_slug, pk=user.payer_id).first()
    if payer is None:
        raise Http404("No such page.")
    return payer


def get_for_payer_or_404(queryset: TenantQuerySet[_M], payer: Payer, **lookup: Any) -> _M:
    """Return the one row of ``payer`` matching ``lookup``; anything else, including another
    payer's row, is a 404."""
    obj = queryset.for_payer(payer).filter(**lookup).first()
    if obj is None:
        raise Http404("No such object.")
    return obj


def tenant_view(
    role: Role,
) -> Callable[
    [Callable[Concatenate[HttpRequest, Payer, _P], HttpResponseBase]],
    Callable[..., HttpResponseBase],
]:
    """Decorate a view taking ``(request, payer, ...)``: sign-in required, tenant checked."""

    def decorate(
        view: Callable[Concatenate[HttpRequest, Payer, _P], HttpResponseBase],
    ) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapper(
            request: HttpRequest, payer_slug: str, *args: _P.args, **kwargs: _P.kwargs
        ) -> HttpResponseBase:
            if not request.user.is_authenticated:
                # Members and administrators sign in through their own payer's provider.
                return redirect_to_login(
                    request.get_full_path(), login_url=f"/p/{payer_slug}/sign-in/"
                )
            payer = payer_for_user(request.user, payer_slug, role=role)
            return view(request, payer, *args, **kwargs)

        return wrapper

    return decorate


class TenantScopedAPIMixin(APIView):
    """For DRF views under ``/p/<payer_slug>/``: resolves ``self.payer`` or answers 404."""

    tenant_role: Role = Role.PLAN_ADMIN
    permission_classes = [permissions.IsAuthenticated]
    payer: Payer

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.payer = payer_for_user(request.user, kwargs["payer_slug"], role=self.tenant_role)
