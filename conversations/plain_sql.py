"""Plain SQL for the few statements every question and answer runs, with Django's own
field conversions on the way in and out.

Each question and answer passes through the one database thread, which shares the GIL
with the relay. A queryset spends 0.1–0.3 ms building and compiling its SQL before a
statement that takes a few µs, and at 50 answers a second the work per answer was about a
fifth of the server's CPU (docs/performance.md). These helpers keep the ORM's value
handling (time zones, decimals, JSON, the backend's adapters) and skip only the compiling.
Everything else uses the ORM.
"""

import functools
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def quote(name: str) -> str:
    return connection.ops.quote_name(name)


def read_models(
    model: type[M], *, where: str, params: list[Any], extra: str = ""
) -> list[tuple[M, tuple]]:
    """Rows of `model`'s table (aliased `t`) matching `where`, each as a model instance and
    the values of the `extra` columns selected after its fields."""
    columns, names, converters = _select_parts(model, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns}{', ' + extra if extra else ''} "  # noqa: S608
            f"FROM {quote(model._meta.db_table)} t WHERE {where}",
            params,
        )
        rows = cursor.fetchall()
    found = []
    for row in rows:
        values = list(row[: len(names)])
        for position, (functions, expression) in converters:
            for convert in functions:
                values[position] = convert(values[position], expression, connection)
        found.append((model.from_db(connection.alias, names, values), row[len(names) :]))
    return found


@functools.cache
def _select_parts(model: type[Model], vendor: str) -> tuple[str, list[str], list]:
    """The column list, attribute names and the backend's and fields' converters of a
    model's fields: what the ORM's compiler works out for every query, here once per model
    (they depend on the backend, not on the connection they are called with)."""
    fields = model._meta.concrete_fields
    compiler = model._default_manager.none().query.get_compiler(connection=connection)
    converters = compiler.get_converters([f.get_col("t") for f in fields])
    columns = ", ".join(f"t.{quote(f.column)}" for f in fields)
    return columns, [f.attname for f in fields], list(converters.items())


def insert(obj: M) -> M:
    """INSERT a new instance as `save()` would (defaults, `auto_now_add`), without signals;
    its primary key is set from the database."""
    insert_many([obj])
    return obj


def insert_many(objs: list[M]) -> None:
    """INSERT new instances of one model as `insert` does, in one statement where the
    backend returns the new keys (SQLite 3.35+, PostgreSQL), else one statement each. The
    keys come back in the order of the rows, as Django's `bulk_create` relies on too; the
    rows' auto_now(_add) fields all get the same time."""
    model = type(objs[0])
    head, row, fields, returning = _insert_parts(model, connection.vendor)
    values = []
    stamps: dict[str, tuple[Any, Any]] = {}  # auto_now(_add) fields: value, database value
    for obj in objs:
        for field, as_is in fields:
            if as_is is _STAMP:  # one timestamp for the whole statement, converted once
                if field.attname not in stamps:
                    stamp = field.pre_save(obj, add=True)
                    stamps[field.attname] = stamp, field.get_db_prep_save(stamp, connection)
                stamp, prepared = stamps[field.attname]
                setattr(obj, field.attname, stamp)
                values.append(prepared)
                continue
            if as_is is not None:
                value = getattr(obj, field.attname)
                if value is None or type(value) is as_is:
                    values.append(value)
                    continue
            values.append(field.get_db_prep_save(field.pre_save(obj, add=True), connection))
    with connection.cursor() as cursor:
        if returning:
            cursor.execute(f"{head} {', '.join([row] * len(objs))} {returning}", values)
            keys = [key for (key,) in cursor.fetchall()]
        else:
            keys = []
            for start in range(0, len(values), len(fields)):
                cursor.execute(f"{head} {row}", values[start : start + len(fields)])
                keys.append(cursor.lastrowid)
    for obj, key in zip(objs, keys, strict=True):
        obj.pk = key
        obj._state.adding = False
        obj._state.db = connection.alias


# Field types whose values of one Python type (or None) Django's conversion returns as
# they are: those are sent as they are, skipping ≈ 2 µs of calls per field and row.
_AS_IS = {
    "CharField": str,
    "TextField": str,
    "BooleanField": bool,
    "FloatField": float,
    **dict.fromkeys(
        ["IntegerField", "BigIntegerField", "SmallIntegerField", "PositiveIntegerField"]
        + ["PositiveSmallIntegerField", "PositiveBigIntegerField", "AutoField", "BigAutoField"],
        int,
    ),
}


# Marks the fields whose pre_save stamps the time (auto_now, auto_now_add): the rows of one
# INSERT share one timestamp, converted for the database once (for a hundred questions sent
# together that conversion was a fifth of their trip to the database).
_STAMP = type("_Stamp", (), {})


def _as_is(field: Field) -> type | None:
    """The Python type whose values this field stores as they are, if any; _STAMP for a
    field that stamps the time when saved."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return _STAMP
    if type(field).pre_save is not Field.pre_save:  # it sets its own value
        return None
    if field.is_relation:
        field = field.target_field
    if type(field).get_db_prep_save is not Field.get_db_prep_save:
        return None
    return _AS_IS.get(field.get_internal_type())


@functools.cache
def _insert_parts(model: type[Model], vendor: str) -> tuple[str, str, list, str]:
    """`INSERT INTO table (columns) VALUES`, one row's placeholders, the fields (each with
    the type it takes as it is), and the `RETURNING` clause ("" where the backend cannot
    return rows from an insert)."""
    meta = model._meta
    fields = [(f, _as_is(f)) for f in meta.concrete_fields if not f.primary_key]
    head = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f, _ in fields)}) "  # noqa: S608
        "VALUES"
    )
    row = f"({', '.join(['%s'] * len(fields))})"
    returning = ""
    if connection.features.can_return_rows_from_bulk_insert:
        returning = f"RETURNING {quote(meta.pk.column)}"
    return head, row, fields, returning


def update(model: type[Model], pk: Any, /, **values: Any) -> int:
    """UPDATE one row's fields (by name) to plain values; the number of rows changed."""
    return update_many(model, [pk], **values)


def update_many(model: type[Model], pks: list, /, **values: Any) -> int:
    """UPDATE the rows with these keys, setting the same fields (by name) to the same plain
    values; the number of rows changed."""
    meta = model._meta
    fields = [meta.get_field(name) for name in values]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} SET {assignments} "  # noqa: S608
            f"WHERE {quote(meta.pk.column)} IN ({', '.join(['%s'] * len(pks))})",
            [*params, *pks],
        )
        return cursor.rowcount
