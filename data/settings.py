"""The allowed values of a config key, declared beside the key and checked when the config loads.

    mode: str = choice("viewfusion", ("viewfusion", "independent"))
    steps: int = number(75, low=1)
    scale: float = number(1.0, above=0)
    tolerance: float | str = number("auto", low=0, high=1, also=("auto",))

``choice`` and ``number`` are ``dataclasses.field``s whose metadata holds the rule; :func:`check_fields` walks a
config section (nested sections too) and refuses the first value that breaks its rule with one line naming
the key and what it may be. A list value is checked item by item. Keys without a rule are free (a model path,
a file name). Each section's own check function calls :func:`check_fields` and adds what one key cannot say.
"""
from __future__ import annotations

import dataclasses
import math
import re

from .errors import InputError


def _field(default, rule: dict):
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def choice(default, options, *, pattern: str | None = None, words: str | None = None):
    """A field whose value (or each item of a list) is one of ``options`` or, with ``pattern``, matches that
    regular expression (``words`` then says the allowed values to a person)."""
    return _field(default, {"choices": tuple(options), "pattern": pattern, "words": words})


def number(default, *, low=None, high=None, above=None, below=None, also=()):
    """A number field within ``low``..``high`` (inclusive) and strictly between ``above`` and ``below``; ``also``:
    words that may stand instead of a number (e.g. "auto")."""
    return _field(default, {"low": low, "high": high, "above": above, "below": below, "also": tuple(also)})


def rule_of(f: dataclasses.Field) -> dict | None:
    return f.metadata.get("rule")


def allowed(rule: dict) -> str:
    """The allowed values in words: "one of a, b, c", "a number >= 1", "a number from 0 to 1"."""
    if "choices" in rule:
        if rule["words"]:
            return rule["words"]
        return f"one of {', '.join(map(str, rule['choices']))}"
    bounds = []
    if rule["low"] is not None and rule["high"] is not None:
        bounds.append(f"from {rule['low']:g} to {rule['high']:g}")
    elif rule["low"] is not None:
        bounds.append(f">= {rule['low']:g}")
    elif rule["high"] is not None:
        bounds.append(f"<= {rule['high']:g}")
    if rule["above"] is not None:
        bounds.append(f"> {rule['above']:g}")
    if rule["below"] is not None:
        bounds.append(f"< {rule['below']:g}")
    text = "a number " + " and ".join(bounds) if bounds else "a finite number"
    return text + "".join(f" or {w}" for w in rule["also"])


def fits(rule: dict, value) -> bool:
    if "choices" in rule:
        return value in rule["choices"] or (rule["pattern"] is not None and isinstance(value, str)
                                             and re.fullmatch(rule["pattern"], value) is not None)
    if isinstance(value, str):
        return value in rule["also"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return ((rule["low"] is None or value >= rule["low"]) and (rule["high"] is None or value <= rule["high"])
            and (rule["above"] is None or value > rule["above"]) and (rule["below"] is None or value < rule["below"]))


def check_fields(section, prefix: str, nested: bool = True) -> None:
    """Refuse the first value of ``section`` (a config dataclass; nested ones too unless ``nested`` is False)
    that breaks its field's rule: InputError("diffusion.mode='fast': choose one of viewfusion, independent")."""
    for f in dataclasses.fields(section):
        value, key = getattr(section, f.name), f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(value):
            if nested:
                check_fields(value, key)
            continue
        rule = rule_of(f)
        if rule is None or value is None:  # no rule, or an optional key left unset
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not fits(rule, item):
                shown = f"{key}={value!r}" if item is value else f"{key} item {item!r}"
                verb = "choose" if "choices" in rule else "must be"
                raise InputError(f"{shown}: {verb} {allowed(rule)}")


def rules(cls, prefix: str = "") -> dict[str, tuple[dataclasses.Field, dict]]:
    """Every key of a config class (nested sections too) that has a rule: dotted key -> (field, rule)."""
    found = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        kind = f.type if not isinstance(f.type, str) else None
        nested = kind if dataclasses.is_dataclass(kind) else None
        if nested is None and f.default_factory is not dataclasses.MISSING:
            made = f.default_factory()
            nested = type(made) if dataclasses.is_dataclass(made) else None
        if nested is not None:
            found.update(rules(nested, key))
        elif rule_of(f) is not None:
            found[key] = (f, rule_of(f))
    return found
