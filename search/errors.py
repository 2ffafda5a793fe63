"""The error a run refuses to start with, and pydantic's errors as one line per problem."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from crossbar.common import did_you_mean, error_text


class ScenarioError(ValueError):
    """A scenario (or run folder) that cannot run; ``str(error)`` is one line per problem."""


def _location(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]" if parts else f"[{p}]"]
        elif "function-" in str(p) or p in ("str", "bool", "dict[str,any]") or str(p)[:1].isupper():
            continue  # pydantic's tags of union members (types and model names)
        else:
            parts.append(str(p))
    return ".".join(parts)


def format_errors(err: ValidationError, root: type[BaseModel], source: str = "scenario") -> str:
    """One line per problem: ``source: field: what is wrong (what is allowed)``; ``root``
    is the schema validated, for the keys allowed where one is unknown."""
    errors = err.errors()
    wheres = [_location(e["loc"]) for e in errors]
    problems: dict[str, list[str]] = {}  # location -> messages (several for a union's members)
    for e, where in zip(errors, wheres):
        if any(other.startswith(where + ".") for other in wheres):
            continue  # a union's other member failed deeper down: that error says more
        msg = error_text(e)
        if e["type"] == "extra_forbidden":
            allowed = allowed_keys(root, e["loc"][:-1])
            msg = f"unknown key{did_you_mean(e['loc'][-1], allowed)}" + (
                f"; allowed here: {', '.join(allowed)}" if allowed else "")
        if where and msg.startswith(where + "["):
            where = ""  # the message names the list item itself
        problems.setdefault(where, [])
        if msg not in problems[where]:
            problems[where].append(msg)
        if "input" in e and e["type"] not in ("value_error", "assertion_error", "missing", "extra_forbidden"):
            problems[where].append(f"(got {e['input']!r})")
    lines = []
    for where, messages in problems.items():
        got = next((m for m in messages if m.startswith("(got ")), None)
        texts = [m.split(",")[0] if len(messages) > 2 else m for m in messages if not m.startswith("(got ")]
        text = " or ".join([texts[0]] + [t.replace("Input should be ", "") for t in texts[1:]])
        lines.append(f"{source}: {where + ': ' if where else ''}{text}{' ' + got if got else ''}")
    return "\n".join(lines[:5]) + (f"\n{source}: ... and {len(lines) - 5} more" if len(lines) > 5 else "")


def _keys(model: Any) -> dict[str, Any]:
    """A schema's keys as written in YAML (a field's alias where it has one) -> field."""
    return {(field.alias or name): field for name, field in getattr(model, "model_fields", {}).items()}


def allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the schema allows at ``loc`` (a pydantic error location)."""
    model: Any = root
    for p in loc:
        if isinstance(p, int):
            continue
        field = _keys(model).get(p)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        # a section whose model a table makes (baselines: search.schema.FromTable) names it in its metadata
        candidates += [m.model() for m in field.metadata if callable(getattr(m, "model", None))]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        for c in candidates:  # list[Variant]
            nested += [a for a in getattr(c, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(_keys(model))
