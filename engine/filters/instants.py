"""Datetimes as Qdrant reads them: strings in the forms it accepts, as ordering keys.

Owns: `instant_key` (a payload or filter string -> an int that orders like chrono's
DateTime<Utc>, to the nanosecond) and its constants.
Not here: how filters and payload indexes use the keys (engine/filters/conditions.py, engine/store/payload_index.py).

Keys are logged in WAL records inside filters (op_codec.encode_tree), and stored in datetime
payload indexes: changing INSTANT_KEY_SPAN breaks replay of old logs and old indexes.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

DATETIME_CACHE_MAX = 65_536  # payload strings parsed as instants, memoized
NS_PER_S = 1_000_000_000
# An instant key holds the nanosecond of the second in [0, 2e9): chrono puts a leap second's
# nanoseconds past 1e9, and orders 10:00:60 after 10:00:59.9 and before 10:01:00.
INSTANT_KEY_SPAN = 2 * NS_PER_S
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Qdrant's datetime forms (see instant_key): date, optional time, optional offset.
DATETIME_FORM = re.compile(
    r"\s*(\d{1,4})-(\d{1,2})-(\d{1,2})"
    r"(?:[Tt ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d+))?)?)?"
    r"(?:\s*([Zz]|UTC|utc|[+-]\d\d(?::?\d\d)?))?"
)


@lru_cache(maxsize=DATETIME_CACHE_MAX)
def instant_key(text: str) -> int | None:
    """An ordering key for a datetime in a form Qdrant accepts, else None.

    Keys order like chrono's DateTime<Utc>: seconds since the epoch, then nanoseconds
    (`INSTANT_KEY_SPAN` per second, so a leap second sorts inside its minute). Qdrant
    (`DateTimeWrapper::from_str`) tries RFC 3339, chrono's relaxed form, offsets without a
    colon or minutes, then naive `YYYY-MM-DD[( |T)HH:MM[:SS[.f]]]` taken as UTC. Keel reads
    these shapes with one expression; chrono's rarer leniencies (spaces inside the date,
    five-digit or signed years) are not accepted.
    """
    found = DATETIME_FORM.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    if zone is not None and second is None:
        return None  # every form with an offset has seconds
    try:
        days = date(int(year), int(month), int(day)).toordinal() - EPOCH_ORDINAL
    except ValueError:
        return None
    hours, minutes, seconds = int(hour or 0), int(minute or 0), int(second or 0)
    offset_s = _zone_offset_s(zone)
    if hours > 23 or minutes > 59 or seconds > 60 or offset_s is None:
        return None
    # chrono keeps nine fraction digits and ignores the rest; second 60 is a leap second.
    nanos = int((fraction or "")[:9].ljust(9, "0")) + (NS_PER_S if seconds == 60 else 0)
    total_s = ((days * 24 + hours) * 60 + minutes) * 60 + min(seconds, 59) - offset_s
    return total_s * INSTANT_KEY_SPAN + nanos


def _zone_offset_s(zone: str | None) -> int | None:
    if zone is None or zone in ("Z", "z", "UTC", "utc"):
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        return None
    return sign * (hours * 3600 + minutes * 60)
