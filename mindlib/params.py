"""Notebook parameters checked against the parameters cell before any data is loaded.

Every notebook's ``parameters`` cell declares typed literals (``lrs: list = [1e-3, 3e-3]  # ...``).
Python (and IPython) keeps those annotations in the module namespace, ``__annotations__``. papermill
(``mindlib.notebooks``, ``papermill -p`` / ``-y``) injects a cell of plain assignments after it; it
checks neither the names nor the types. The first line of each notebook's first code cell calls
:func:`check_parameters`, which raises, naming the parameter, on

- a value whose type is not the declared one: nothing is coerced (``-p lrs 0.003`` gives a float where
  a list is declared, ``-p backbones tribe`` a string that would be iterated letter by letter);
- an injected name the parameters cell does not declare (a typo such as ``lrss``).

How injected names are told apart
---------------------------------
Under IPython (papermill runs notebooks in a kernel), the executed cells are in the ``In`` history and
papermill's injected cell starts with its marker comment ``# Parameters``
(:data:`PAPERMILL_MARKER`): the injected names are that cell's assignment targets. Anywhere else (a
notebook run as a plain script, or a namespace built by hand), every name that is not declared, not a
module, not an IPython name (``In``, ``Out``, ``get_ipython``, ``exit``, ``quit``, ``open`` and the
kernel's hidden names) and does not start with ``_`` counts as injected: at the top of the first code
cell nothing else has been defined yet. Re-running cells in a live kernel therefore never flags the
notebook's own variables.

The same checks for configs
---------------------------
Every config dataclass (``AFIREConfig``, ``SADGateConfig``, ``MINDConfig``, ``ExperimentConfig``) validates
its choices with :func:`check_literal_fields` (each choice a ``typing.Literal`` declared once, the tuple of
allowed values ``typing.get_args`` of it) and names an unknown value's closest choice as
:func:`unknown_names` does for unknown parameter names; :func:`default_of` lets one config reuse another's
default instead of retyping it.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import difflib
import functools
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "check_parameters",
    "declared_parameters",
    "PAPERMILL_MARKER",
    "unknown_names",
    "check_choice",
    "check_literal_fields",
    "default_of",
]

PAPERMILL_MARKER = "# Parameters"  # first line of the cell papermill injects (papermill.translators)
IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def declared_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters cell's names and their current values, in declaration order.

    Parameters
    ----------
    namespace : mapping
        The notebook's ``globals()``.

    Returns
    -------
    dict
        ``{name: value}`` for every name annotated at module level (``name: type = value``).
    """
    annotations = _annotations(namespace)
    return {name: namespace[name] for name in annotations if name in namespace}


def _annotations(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Module-level annotations: ``__annotations__`` (Python < 3.14) or the lazy ``__annotate__`` (3.14+)."""
    if namespace.get("__annotations__"):
        return dict(namespace["__annotations__"])
    annotate = namespace.get("__annotate__")
    return dict(annotate(1)) if callable(annotate) else {}  # 1: annotationlib.Format.VALUE


def _type_ok(value: Any, annotation: Any) -> bool:
    """``isinstance`` without coercion: ``bool`` is not an ``int``; an ``int`` is a ``float``."""
    if annotation is Any or annotation is object:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if origin is not None:  # list[float], dict[str, int], tuple[int, ...]
        if not _type_ok(value, origin):
            return False
        args = typing.get_args(annotation)
        if origin in (list, set, frozenset) and args:
            return all(_type_ok(v, args[0]) for v in value)
        if origin is dict and len(args) == 2:
            return all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items())
        if origin is tuple and args:
            if len(args) == 2 and args[1] is Ellipsis:
                return all(_type_ok(v, args[0]) for v in value)
            return len(args) == len(value) and all(_type_ok(v, a) for v, a in zip(value, args))
        return True
    if not isinstance(annotation, type):
        raise TypeError(f"cannot check values against the annotation {annotation!r}; declare a plain type")
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _spelling(name: str, value: Any, annotation: Any) -> str:
    """How to pass a value of the declared type from the command line and from Python."""
    if _type_ok([], annotation) or typing.get_origin(annotation) is list:
        example = value if isinstance(value, list) else [value]
        if isinstance(value, str) and value.startswith("["):
            try:
                example = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                example = [value]
        return (
            f"A list parameter takes a list, even for one value: papermill -y '{name}: {json.dumps(example)}' "
            f"(papermill -p always gives one number or string, so -p {name} '{json.dumps(example)}' "
            f"passes the string {json.dumps(example)!r}), or parameters={{{name!r}: {example!r}}} from "
            "Python (mindlib.notebooks.execute)."
        )
    if annotation is str:
        return f"Pass text: papermill -r {name} VALUE (raw string), or parameters={{{name!r}: '...'}}."
    return f"Pass a {_type_name(annotation)}: papermill -y '{name}: VALUE', or parameters={{{name!r}: ...}}."


def _injected_names(namespace: Mapping[str, Any]) -> set[str] | None:
    """Names assigned by papermill's injected cell(s), from the IPython history; None outside IPython."""
    history = namespace.get("In")
    if not (callable(namespace.get("get_ipython")) and isinstance(history, list)):
        return None
    names: set[str] = set()
    for source in history:
        if not isinstance(source, str) or not source.lstrip().startswith(PAPERMILL_MARKER):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _hidden_names(namespace: Mapping[str, Any]) -> set[str]:
    """IPython's own names in the user namespace (``user_ns_hidden``), when running in IPython."""
    get_ipython = namespace.get("get_ipython")
    try:
        shell = get_ipython() if callable(get_ipython) else None
        return set(getattr(shell, "user_ns_hidden", {}) or {})
    except Exception:  # a stand-in get_ipython; the static list below still applies
        return set()


def unknown_names(unknown: list[str], known) -> str:
    """``'lr' (did you mean 'lrs'?), 'x'``: the unknown names, each with its closest known name if any."""
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(hints)


def check_choice(value: Any, choices: Sequence, name: str) -> None:
    """Raise unless ``value`` is one of ``choices``: the one "choose one of" check of every config.

    Parameters
    ----------
    value : Any
        The value given.
    choices : sequence
        The allowed values (``typing.get_args`` of the field's ``Literal``).
    name : str
        What the value is, for the message: ``"ExperimentConfig.mode"``, ``"balance_loss(kind)"``.

    Raises
    ------
    ValueError
        ``ExperimentConfig.mode must be one of ('both', 'token', 'prior'), got 'tokn' (did you mean
        'token'?)``.
    """
    if value in choices:
        return
    hint = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}{hint}")


@functools.cache
def _literal_fields(cls: type) -> dict[str, tuple]:
    """``{field: choices}`` for the fields of dataclass ``cls`` annotated with a ``typing.Literal``."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: typing.get_args(hints[f.name])
        for f in dataclasses.fields(cls)
        if typing.get_origin(hints[f.name]) is typing.Literal
    }


def check_literal_fields(config: Any) -> None:
    """:func:`check_choice` for every ``Literal`` field of a dataclass instance: the annotation is the one
    list of choices (``mode: Mode = "both"`` with ``Mode = Literal["both", "token", "prior"]``)."""
    for name, choices in _literal_fields(type(config)).items():
        check_choice(getattr(config, name), choices, f"{type(config).__name__}.{name}")


def default_of(cls: type, name: str) -> Any:
    """The declared default of field ``name`` of dataclass ``cls``, so another config reuses it, not a copy.

    Raises
    ------
    ValueError
        If ``cls`` has no such field or the field has no default.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ValueError(f"{cls.__name__} has no field {unknown_names([name], fields)}")
    f = fields[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ValueError(f"{cls.__name__}.{name} has no default")


def check_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Check the notebook's parameters against the parameters cell's annotations.

    Call it first in the first code cell: ``check_parameters(globals())``.

    Parameters
    ----------
    namespace : mapping
        The notebook's ``globals()`` after the parameters cell (and papermill's injected cell) ran.

    Returns
    -------
    dict
        ``{name: value}`` of the declared parameters (:func:`declared_parameters`).

    Raises
    ------
    ValueError
        If no parameter is declared, or a name was injected that the parameters cell does not declare.
    TypeError
        If a value is not of its declared type (nothing is coerced); the message shows how to spell it.
    """
    annotations = _annotations(namespace)
    if not annotations:
        raise ValueError(
            "no annotated parameters in this namespace: run the parameters cell first "
            "(typed literals, e.g. `lrs: list = [1e-3]  # learning rates`)"
        )
    injected = _injected_names(namespace)
    if injected is None:
        hidden = IPYTHON_NAMES | _hidden_names(namespace)
        injected = {
            name
            for name, value in namespace.items()
            if not name.startswith("_") and name not in hidden and not isinstance(value, types.ModuleType)
        }
    unknown = sorted(injected - set(annotations))
    if unknown:
        raise ValueError(
            f"unknown notebook parameter(s) {unknown_names(unknown, annotations)}: the parameters cell declares "
            f"{sorted(annotations)}. Fix the name, or declare the parameter in the parameters cell."
        )
    problems = []
    for name, annotation in annotations.items():
        if name not in namespace:
            continue
        if isinstance(annotation, str):  # postponed annotations (``from __future__ import annotations``)
            annotation = eval(annotation, {"__builtins__": builtins, "typing": typing}, dict(namespace))
        value = namespace[name]
        if not _type_ok(value, annotation):
            problems.append(
                f"parameter {name!r} must be {_type_name(annotation)} as the parameters cell declares, "
                f"got {type(value).__name__} {value!r}. {_spelling(name, value, annotation)}"
            )
    if problems:
        raise TypeError("\n".join(problems))
    return declared_parameters(namespace)
