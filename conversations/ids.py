"""What an id from outside may be: a whole number a database row's key can hold.

Every id reaches the database from a URL, a query string or a socket frame, and a number
past the column's range is not "no such row" to every driver: SQLite raises OverflowError
on `pk__in`, PostgreSQL an out-of-range error. So ids are checked here, at the edge (the
URL converter `id`, the views' query strings, `protocol.parse_frame`), and a bad one is a
404 or a clear error before any query. Standard library only: the protocol imports it.
"""

# The largest key of a BigAutoField (DEFAULT_AUTO_FIELD) on every database we support.
MAX_ID = 2**63 - 1


def is_id(value: object) -> bool:
    """An int (not a bool) that can be a row's key: 1 to MAX_ID."""
    return type(value) is int and 0 < value <= MAX_ID


def parse_id(text: str) -> int:
    """The id `text` spells in plain digits, or ValueError (signs, spaces, `1_000` and
    digits of other scripts, which int() would take, are refused too)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_ID)):
        raise ValueError(text)
    value = int(text)
    if not is_id(value):
        raise ValueError(text)
    return value


def parse_ids(text: str) -> list[int]:
    """Comma-separated ids (empty: none), or ValueError."""
    return [parse_id(part) for part in text.split(",")] if text else []


class IdConverter:
    """The `<id:...>` path converter: a path with anything but an id does not match, so it
    is a 404 before the view runs."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        return parse_id(value)  # ValueError: Django tries the next pattern, then 404s

    def to_url(self, value: int) -> str:
        return str(value)
