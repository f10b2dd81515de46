"""Configuration dataclasses: build them from layered dicts, validate, save and load as YAML.

Every method describes its hyperparameters with a ``@dataclass``. This module turns plain
dictionaries (a dataset preset, a YAML file, ``--set key=value`` overrides) into an instance of
that dataclass, coercing and validating each value against the field's type annotation, and writes
the result back as YAML so that a run can be reproduced from its saved ``config.yaml``.

Supported field types: ``int``, ``float``, ``bool``, ``str``, :class:`pathlib.Path`, enums,
``Optional[...]`` / ``X | None`` and other unions, ``Literal[...]``, ``list[...]``,
``tuple[...]``, ``dict[..., ...]``, ``Any`` and nested dataclasses. Nested fields are addressed
with dotted keys (``encoder.hidden=256``) or with nested mappings (``{"encoder": {"hidden": 256}}``).

Typical use::

    cfg = build_config(GraceConfig, presets["cora"], load_yaml("my.yaml"),
                       parse_overrides(["lr=1e-3", "encoder.hidden=256"]))
    save_config(cfg, "runs/x/config.yaml", extra={"method": "grace", "seed": 0})

The saved file keeps the run information (method, seeds, device, versions) under a ``run:``
section; :data:`RUN_SECTION` is therefore a reserved key that no config dataclass may use.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from .atomic import atomic_write

__all__ = [
    "RUN_SECTION",
    "build_config",
    "config_from_dict",
    "config_to_dict",
    "config_keys",
    "load_yaml",
    "parse_overrides",
    "save_config",
]

#: Reserved top-level YAML key holding run information (method, seeds, device, versions).
RUN_SECTION = "run"

T = TypeVar("T")

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}
_NONE_STRINGS = {"none", "null", "~"}


# ---------------------------------------------------------------------------------------------
# type helpers
# ---------------------------------------------------------------------------------------------
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _settable_fields(cls: type) -> list[dataclasses.Field]:
    """Fields of ``cls`` that can be passed to its constructor."""
    return [f for f in dataclasses.fields(cls) if f.init]


def _field_types(cls: type) -> dict[str, Any]:
    """Resolve the annotations of ``cls`` (string annotations included) to real types.

    Annotations that cannot be resolved (e.g. names local to a function) fall back to ``Any``,
    i.e. the value is accepted without coercion.
    """
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable forward references: resolve field by field
        hints = {}
        module = sys.modules.get(cls.__module__)
        namespace = dict(vars(module)) if module is not None else {}
        for f in dataclasses.fields(cls):
            if not isinstance(f.type, str):
                hints[f.name] = f.type
                continue
            try:
                hints[f.name] = eval(f.type, namespace, dict(vars(typing)))  # noqa: S307
            except Exception:  # noqa: BLE001
                hints[f.name] = Any
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    """Readable name of a type annotation, used in error messages."""
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "None"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return f"one of {list(args)}"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if args:
            inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
            return f"{name}[{inner}]"
        return name
    if _is_dataclass_type(tp):
        return f"a mapping of {tp.__name__} fields"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_error(key: str, tp: Any, value: Any, hint: str = "") -> TypeError:
    return TypeError(f"{key}: expected {_type_name(tp)}, got {_describe(value)}{hint}")


# ---------------------------------------------------------------------------------------------
# coercion of one value
# ---------------------------------------------------------------------------------------------
def _coerce_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _type_error(key, int, value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise _type_error(key, int, value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text, 10)
        except ValueError:
            pass
        try:
            as_float = float(text)
        except ValueError:
            raise _type_error(key, int, value) from None
        if as_float.is_integer():
            return int(as_float)
    raise _type_error(key, int, value)


def _coerce_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _type_error(key, float, value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _type_error(key, float, value)


def _coerce_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _type_error(key, bool, value, " (use true/false, yes/no or 1/0)")


def _coerce_str(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        # YAML reads yes/no/on/off as booleans: make the fix obvious instead of storing "True".
        raise _type_error(key, str, value, " (quote the value to pass it as text)")
    if isinstance(value, (int, float)):
        return str(value)
    raise _type_error(key, str, value)


def _coerce_literal(key: str, value: Any, choices: tuple[Any, ...]) -> Any:
    for choice in choices:
        if type(choice) is type(value) and choice == value:
            return choice
    if not isinstance(value, (dict, list, tuple, set)):
        text = str(value).strip()
        for choice in choices:
            if str(choice) == text:
                return choice
        lowered = text.lower()
        for choice in choices:
            if isinstance(choice, str) and choice.lower() == lowered:
                return choice
    suggestion = ""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    if close:
        suggestion = f" (did you mean {close[0]!r}?)"
    raise ValueError(f"{key}: expected one of {list(choices)}, got {value!r}{suggestion}")


def _split_list_string(value: str) -> list[str]:
    text = value.strip()
    if text.startswith(("[", "(")) and text.endswith(("]", ")")):
        text = text[1:-1]
    return [part.strip() for part in text.split(",") if part.strip()]


def _as_items(key: str, tp: Any, value: Any) -> list[Any]:
    """Turn a list-like value (list, tuple, comma-separated string, scalar) into a list."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return _split_list_string(value)
    if isinstance(value, (Mapping, set, frozenset)) or value is None:
        raise _type_error(key, tp, value)
    return [value]


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Coerce ``value`` to the annotation ``tp``; raise an error naming ``key`` otherwise."""
    if tp is Any or tp is object:
        return value
    origin, args = get_origin(tp), get_args(tp)

    if origin is typing.Annotated:
        return _coerce(key, value, args[0])

    if _is_union(tp):
        allows_none = type(None) in args
        members = [a for a in args if a is not type(None)]
        if value is None:
            if allows_none:
                return None
            raise _type_error(key, tp, value)
        if (allows_none and isinstance(value, str) and value.strip().lower() in _NONE_STRINGS
                and str not in members):
            return None
        for member in members:  # an exact match wins (e.g. "3" for int | str stays a string)
            if isinstance(member, type) and type(value) is member:
                return value
        for member in members:
            try:
                return _coerce(key, value, member)
            except (TypeError, ValueError):
                continue
        raise _type_error(key, tp, value)

    if origin is Literal:
        return _coerce_literal(key, value, args)

    if value is None:
        if _is_dataclass_type(tp) or tp in (int, float, bool, str):
            raise _type_error(key, tp, value, " (the field is not Optional)")

    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _from_mapping(tp, value, prefix=f"{key}.")
        raise _type_error(key, tp, value)

    if tp is bool:
        return _coerce_bool(key, value)
    if tp is int:
        return _coerce_int(key, value)
    if tp is float:
        return _coerce_float(key, value)
    if tp is str:
        return _coerce_str(key, value)

    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        for member in tp:
            if value == member.value or (isinstance(value, str) and value == member.name):
                return member
        raise ValueError(f"{key}: expected one of {[m.name for m in tp]}, got {value!r}")

    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, (str, PurePath)):
            return tp(value)
        raise _type_error(key, tp, value)

    if origin in (list, Sequence, typing.Sequence) or tp in (list, Sequence):
        item_tp = args[0] if args else Any
        items = _as_items(key, tp, value)
        return [_coerce(f"{key}[{i}]", item, item_tp) for i, item in enumerate(items)]

    if origin is tuple or tp is tuple:
        items = _as_items(key, tp, value)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item_tp = args[0] if args else Any
            return tuple(_coerce(f"{key}[{i}]", item, item_tp) for i, item in enumerate(items))
        if args == ((),):  # tuple[()]
            args = ()
        if len(items) != len(args):
            raise ValueError(f"{key}: expected {len(args)} items ({_type_name(tp)}), "
                             f"got {len(items)}: {value!r}")
        return tuple(_coerce(f"{key}[{i}]", item, item_tp)
                     for i, (item, item_tp) in enumerate(zip(items, args)))

    if origin in (set, frozenset) or tp in (set, frozenset):
        item_tp = args[0] if args else Any
        items = _as_items(key, tp, value)
        container = origin or tp
        return container(_coerce(f"{key}[{i}]", item, item_tp) for i, item in enumerate(items))

    if origin in (dict, Mapping, typing.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _type_error(key, tp, value)
        key_tp, val_tp = (args if len(args) == 2 else (Any, Any))
        return {_coerce(f"{key} (key {k!r})", k, key_tp): _coerce(f"{key}.{k}", v, val_tp)
                for k, v in value.items()}

    check_tp = origin if origin is not None else tp
    if isinstance(check_tp, type):
        if isinstance(value, check_tp):
            return value
        raise _type_error(key, tp, value)
    return value  # an annotation we do not understand (TypeVar, NewType, ...): accept as is


# ---------------------------------------------------------------------------------------------
# dicts <-> dataclasses
# ---------------------------------------------------------------------------------------------
def config_keys(cls: type, *, prefix: str = "") -> list[str]:
    """All settable keys of a config dataclass, nested ones as dotted paths.

    Args:
        cls: a dataclass type.
        prefix: prepended to every key (used for recursion).

    Returns:
        Keys in declaration order, e.g. ``["dataset", "lr", "encoder.hidden", ...]``.
    """
    keys: list[str] = []
    types_ = _field_types(cls)
    for f in _settable_fields(cls):
        tp = types_[f.name]
        nested = _nested_dataclass(tp)
        if nested is not None:
            keys.extend(config_keys(nested, prefix=f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _nested_dataclass(tp: Any) -> type | None:
    """The dataclass type inside ``tp`` (``Sub`` or ``Optional[Sub]``), else None."""
    if _is_dataclass_type(tp):
        return tp
    if _is_union(tp):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1 and _is_dataclass_type(members[0]):
            return members[0]
    return None


def _unknown_key_error(key: str, full_key: str, cls: type, prefix: str) -> ValueError:
    valid = [f.name for f in _settable_fields(cls)]
    all_keys = config_keys(cls, prefix=prefix)
    # the key exists one level down, e.g. "hidden" for "encoder.hidden"
    close = [k for k in all_keys if k != full_key and k.rsplit(".", 1)[-1] == key][:3]
    if not close:
        close = difflib.get_close_matches(full_key, all_keys, n=1, cutoff=0.6)
    if not close:
        close = [f"{prefix}{c}" for c in difflib.get_close_matches(key, valid, n=1, cutoff=0.6)]
    suggestion = ""
    if close:
        suggestion = "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return ValueError(f"unknown config key '{full_key}' for {cls.__name__}{suggestion} "
                      f"(valid keys: {', '.join(all_keys)})")


def _expand_dotted(d: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
    """Turn ``{"a.b": 1, "a": {"c": 2}}`` into ``{"a": {"b": 1, "c": 2}}`` (recursively)."""
    out: dict[str, Any] = {}
    for raw_key, value in d.items():
        if not isinstance(raw_key, str):
            raise TypeError(f"{where or 'config'}: keys must be strings, got {_describe(raw_key)}")
        parts = [p.strip() for p in raw_key.split(".")]
        if any(not p for p in parts):
            raise ValueError(f"malformed config key '{where}{raw_key}': empty part in dotted key")
        if isinstance(value, Mapping):
            value = _expand_dotted(value, where=f"{where}{raw_key}.")
        target = out
        for depth, part in enumerate(parts[:-1]):
            existing = target.get(part)
            if existing is None:
                existing = target[part] = {}
            elif not isinstance(existing, dict):
                path = where + ".".join(parts[:depth + 1])
                raise ValueError(f"config key '{path}' is given both as a value ({existing!r}) "
                                 f"and as a section ('{where}{raw_key}')")
            target = existing
        last = parts[-1]
        if isinstance(target.get(last), dict) and isinstance(value, dict):
            target[last] = _deep_merge(target[last], value)
        else:
            target[last] = value
    return out


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``; mappings merge, other values replace."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _from_mapping(cls: type[T], d: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build ``cls`` from an already dotted-expanded mapping."""
    fields_by_name = {f.name: f for f in _settable_fields(cls)}
    types_ = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        full_key = f"{prefix}{key}"
        field = fields_by_name.get(key)
        if field is None:
            raise _unknown_key_error(key, full_key, cls, prefix)
        tp = types_[key]
        nested = _nested_dataclass(tp)
        if nested is not None and isinstance(value, Mapping):
            # start from the field's own default so that a partial override keeps the rest
            default = _field_default(field)
            if isinstance(default, nested):
                value = _deep_merge(config_to_dict(default), value)
            kwargs[key] = _from_mapping(nested, value, prefix=f"{full_key}.")
        else:
            kwargs[key] = _coerce(full_key, value, tp)
    missing = [f"{prefix}{name}" for name, f in fields_by_name.items()
               if name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{cls.__name__}: missing required config key(s): {', '.join(missing)}")
    return cls(**kwargs)


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def config_from_dict(cls: type[T], d: Mapping[str, Any] | None) -> T:
    """Build a config dataclass from a mapping, validating keys and coercing values.

    Keys may be dotted (``"encoder.hidden"``) or nested mappings; fields that are not given keep
    their defaults (for a nested dataclass, the other sub-fields keep theirs too).

    Args:
        cls: the config dataclass type.
        d: mapping of field names (or dotted paths) to values; None means empty.

    Returns:
        An instance of ``cls``.

    Raises:
        TypeError: ``cls`` is not a dataclass, ``d`` is not a mapping, or a value has the wrong
            type for its field (the message names the key).
        ValueError: unknown key (with a "did you mean" suggestion and the valid keys), a value
            not among a ``Literal``'s choices, or a required field missing.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"cls: expected a dataclass type, got {_describe(cls)}")
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise TypeError(f"config for {cls.__name__}: expected a mapping, got {type(d).__name__}")
    return _from_mapping(cls, _expand_dotted(d))


def _plain(value: Any) -> Any:
    """Convert a config value to YAML/JSON-friendly builtins."""
    if _is_dataclass_type(type(value)):
        return config_to_dict(value)
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _plain(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None:
        return None
    for kind in (bool, int, float, str):  # also turns subclasses (e.g. TorchVersion) into builtins
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dict of plain Python values (lists for tuples, str for paths) of a config.

    Only constructor fields are included, so the result can be fed back to
    :func:`config_from_dict`.

    Args:
        cfg: a dataclass instance.

    Returns:
        The config as a dict that ``yaml.safe_dump`` and ``json.dump`` accept.
    """
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"cfg: expected a dataclass instance, got {_describe(cfg)}")
    return {f.name: _plain(getattr(cfg, f.name)) for f in _settable_fields(type(cfg))}


# ---------------------------------------------------------------------------------------------
# layers: YAML files, overrides
# ---------------------------------------------------------------------------------------------
def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file gives ``{}``).

    Args:
        path: file to read.

    Returns:
        The mapping, keys as in the file (dotted keys are kept).

    Raises:
        ValueError: the file does not exist, is not valid YAML, or is not a mapping.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"config file not found: {p}")
    if not p.is_file():
        raise ValueError(f"config file: expected a file, got a directory: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"config file {p}: cannot read it ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"config file {p}: invalid YAML{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {p}: expected a mapping of key: value at the top level, "
                         f"got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise ValueError(f"config file {p}: keys must be strings, got {_describe(key)}")
    return data


def parse_overrides(items: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``["key=value", ...]`` (``--set`` arguments) into a flat dict.

    The value is read with ``yaml.safe_load`` (``3`` is an int, ``[1, 2]`` a list, ``null`` None,
    ``1e-3`` stays a string that float fields accept); an empty value gives None. Later items
    override earlier ones. Keys keep their dots (``encoder.hidden``).

    Args:
        items: the ``key=value`` strings.

    Returns:
        Mapping of key to parsed value.

    Raises:
        ValueError: an item without ``=``, with an empty key, or with an unparsable value.
    """
    out: dict[str, Any] = {}
    if items is None:
        return out
    if isinstance(items, str):
        raise TypeError(f"items: expected a list of 'key=value' strings, got a single string "
                        f"{items!r}")
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"override: expected a 'key=value' string, got {_describe(item)}")
        if "=" not in item:
            raise ValueError(f"malformed override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part.strip() for part in key.split(".")):
            raise ValueError(f"malformed override {item!r}: expected key=value with a non-empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "cannot parse the value"
            raise ValueError(f"malformed override {item!r}: {problem} "
                             f"(quote the value to pass it as text)") from exc
        out[key] = value
    return out


def build_config(cls: type[T], *layers: Mapping[str, Any] | Any | None) -> T:
    """Merge config layers (later ones win) and build the dataclass.

    The usual order is: dataset preset < YAML file < ``--set`` overrides. Nested sections merge
    key by key, so an override of ``encoder.hidden`` keeps the preset's other encoder fields.

    Args:
        cls: the config dataclass type.
        *layers: mappings (dotted or nested keys), dataclass instances, or None (skipped).

    Returns:
        An instance of ``cls``.

    Raises:
        TypeError, ValueError: as :func:`config_from_dict`; a layer that is not a mapping.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"cls: expected a dataclass type, got {_describe(cls)}")
    merged: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        if layer is None:
            continue
        if dataclasses.is_dataclass(layer) and not isinstance(layer, type):
            layer = config_to_dict(layer)
        if not isinstance(layer, Mapping):
            raise TypeError(f"layers[{i}]: expected a mapping, got {type(layer).__name__}")
        merged = _deep_merge(merged, _expand_dotted(layer))
    return _from_mapping(cls, merged)


def save_config(cfg: Any, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
                ) -> Path:
    """Write a config (and run information) as YAML.

    The file holds the config fields at the top level and ``extra`` under a ``run:`` section,
    so that ``contrastkit train METHOD --config PATH`` reproduces the run. The file is written
    atomically (:func:`~contrastkit.core.atomic.atomic_write`: a uniquely named temporary file in
    the same folder, ``fsync``, :func:`os.replace`), so a crash or a concurrent writer never
    leaves a partial config behind.

    Args:
        cfg: a config dataclass instance.
        path: output file (parent folders are created).
        extra: run information such as method, seed(s), device and versions.

    Returns:
        The path written.

    Raises:
        ValueError: ``cfg`` has a field named ``run`` (reserved for the run section).
    """
    data = config_to_dict(cfg)
    doc: dict[str, Any] = {}
    if extra:
        if RUN_SECTION in data:
            raise ValueError(f"{type(cfg).__name__}: the field name '{RUN_SECTION}' is reserved "
                             f"for run information in saved configs")
        if not isinstance(extra, Mapping):
            raise TypeError(f"extra: expected a mapping, got {type(extra).__name__}")
        doc[RUN_SECTION] = _plain(dict(extra))
    doc.update(data)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    header = "# contrastkit configuration"
    method = (extra or {}).get("method")
    if method:
        header += f": rerun with `contrastkit train {method} --config {p}`"
    text = header + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False,
                                          allow_unicode=True)
    with atomic_write(p, "w", encoding="utf-8") as fh:
        fh.write(text)
    return p
