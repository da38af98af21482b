"""Fail closed by construction: a query of tenant-owned rows reaches the database only when scoped.

A query of a model with a ``payer`` column (every TenantOwned model, and the audit log)
is *scoped* when its WHERE clause limits the rows to one payer: ``.for_payer(payer)``, or
``filter(payer=...)`` / ``filter(payer_id=...)`` with a value. Any other query runs only
when it says why it may read every payer's rows (``.across_payers(reason=...)``), or when
Django built it from rows already loaded: a relation such as ``consent.exchange_requests``,
a prefetch (with or without its own ``Prefetch`` query set), or the inner query of an
``exclude()`` across a relation. Everything else raises UnscopedTenantQuery at the moment it would be
compiled — whatever evaluates it: iteration, get, count, exists, aggregate, update,
delete, or a subquery inside another query (STYLE.md #2; ARCHITECTURE.md "Security model").

Inserts build their own queries and are not checked: a new row names its payer itself.
"""

from collections.abc import Callable, Hashable, Iterator
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Exists, Model
from django.db.models.expressions import Col
from django.db.models.lookups import Exact, In
from django.db.models.sql import Query
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.where import AND, OR, NothingNode, WhereNode

PAYER_FIELD = "payer"


class UnscopedTenantQuery(Exception):
    """A query of tenant-owned rows names no payer and gives no reason to read across payers."""

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        super().__init__(
            f"{model._meta.label} rows belong to payers: scope the query with "
            f".for_payer(payer) or a filter on {PAYER_FIELD}, or mark a deliberate read "
            f'across payers with .across_payers(reason="...")'
        )


def _payers_limited_to(
    node: Any, is_payer_column: Callable[[Any], bool]
) -> frozenset[Hashable] | None:
    """Return the payer ids a WHERE ``node`` limits the rows to, or None when it does not."""
    if isinstance(node, NothingNode):  # QuerySet.none(): no rows at all
        return frozenset()
    if isinstance(node, WhereNode):
        if node.negated:
            return None
        limits = [_payers_limited_to(child, is_payer_column) for child in node.children]
        if node.connector == AND:
            known = [limit for limit in limits if limit is not None]
            return frozenset.intersection(*known) if known else None
        if node.connector == OR and limits and None not in limits:
            return frozenset().union(*(limit for limit in limits if limit is not None))
        return None
    if isinstance(node, Exact | In) and is_payer_column(node.lhs):
        if hasattr(node.rhs, "resolve_expression"):  # a column or a subquery: no fixed payer
            return None
        return frozenset([node.rhs]) if isinstance(node, Exact) else frozenset(node.rhs)
    return None


class TenantQuery(Query):
    """A query of tenant-owned rows that checks its own scope before it is compiled."""

    # Why the query may read every payer's rows (TenantQuerySet.across_payers), or "".
    cross_payer_reason = ""
    # The loaded row Django reached these rows from (a relation or a prefetch), or the
    # already checked query an exclude() across a relation correlates them with; or "".
    reached_from = ""

    def scope_is_allowed(self) -> bool:
        """Return whether the query is scoped to one payer, or says why it need not be."""
        if self.cross_payer_reason or self.reached_from:
            return True
        if self.combinator:  # union() and the like: each part is checked as it is compiled
            return True
        base_alias = next(iter(self.alias_map), None)
        payer_field = self.get_meta().get_field(PAYER_FIELD)

        def is_payer_column(expression: Any) -> bool:
            return (
                isinstance(expression, Col)
                and expression.alias == base_alias
                and expression.target == payer_field
            )

        payers = _payers_limited_to(self.where, is_payer_column)
        return payers is not None and len(payers) <= 1

    def scope_require(self) -> None:
        """Raise UnscopedTenantQuery unless ``scope_is_allowed``."""
        if not self.scope_is_allowed():
            raise UnscopedTenantQuery(self.model or Model)

    def get_compiler(
        self, using: str | None = None, connection: Any = None, elide_empty: bool = True
    ) -> SQLCompiler:
        # Every SELECT passes here, a subquery's too, just before its SQL is written.
        self.scope_require()
        return super().get_compiler(using, connection, elide_empty)

    def sql_with_params(self) -> tuple[str, tuple[Any, ...]]:
        # Printing a query (str(queryset.query)) reads no rows; it stays possible for debugging.
        return Query.get_compiler(self, DEFAULT_DB_ALIAS).as_sql()

    def chain(self, klass: type[Query] | None = None) -> Query:
        # update() turns the query into an UpdateQuery, which compiles without the check above.
        if klass is not None and not issubclass(klass, TenantQuery):
            self.scope_require()
        return super().chain(klass)

    def combine(self, rhs: Query, connector: str) -> None:
        # With OR (``|``) the other query's rows join these: it must have been allowed as well.
        rhs_allowed = isinstance(rhs, TenantQuery) and rhs.scope_is_allowed()
        super().combine(rhs, connector)
        if connector != AND and not rhs_allowed:
            self.cross_payer_reason = self.reached_from = ""

    def split_exclude(self, filter_expr: Any, can_reuse: Any, names_with_path: Any) -> Any:
        # exclude() across a to-many relation runs "NOT EXISTS (inner query)", correlated with
        # this query's rows; the inner query is built as self.__class__ and must not be refused.
        condition, needed_inner = super().split_exclude(filter_expr, can_reuse, names_with_path)
        for node in _walk(condition):
            if isinstance(node, Exists) and isinstance(node.query, TenantQuery):
                node.query.reached_from = "exclude() across a relation"
        return condition, needed_inner


def _walk(node: Any) -> Iterator[Any]:
    """Yield ``node`` and every WHERE node and expression below it."""
    yield node
    children = node.children if isinstance(node, WhereNode) else node.get_source_expressions()
    for child in children:
        yield from _walk(child)
