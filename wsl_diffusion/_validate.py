"""The one check every configuration dataclass runs first: its numbers are numbers, and finite.

NaN slips through comparisons (`nan > 0` and `nan <= 0` are both False), so a range check alone
lets it in; a config read from JSON may also hold a string where a number belongs.
"""
from __future__ import annotations

import math
from dataclasses import fields


def check_numbers(obj) -> None:
    """ValueError naming the first field of dataclass `obj` whose declared type is a number
    (int or float, possibly `| None`, or `| str` whose strings the dataclass checks itself) but
    whose value is not a finite one."""
    for f in fields(obj):
        declared = str(f.type)
        if "int" not in declared and "float" not in declared:
            continue
        value = getattr(obj, f.name)
        if (value is None and "None" in declared) or (isinstance(value, str) and "str" in declared):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`{f.name}` must be a number; got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"`{f.name}` must be finite; got {value!r}")
