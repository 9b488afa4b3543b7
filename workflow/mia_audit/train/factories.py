"""A user's own model, named in the config as a factory: ``"module:function"`` or
``"path/to/file.py:function"``.

``model.factory`` names a function that builds one untrained model: a module importable from
the environment (``my_models.tabular:make``) or a Python file, its path relative to the
working directory Snakemake runs in (``models/my_network.py:build``), loaded with
:func:`importlib.util.spec_from_file_location` under a name of its own
(:func:`module_name`), so that its classes can be found again when a saved model is read
(:mod:`mia_audit.train.estimators`). Every failure is a :class:`~mia_audit.errors.ConfigError`
of one line naming the config key.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from mia_audit.errors import ConfigError

_FORM = re.compile(r"^(?P<where>[^:]+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


def split(text: str, key: str) -> tuple[str, str]:
    """(module or file, function name) of a factory string; a ConfigError when it has neither form."""
    m = _FORM.match(str(text).strip())
    if not m:
        raise ConfigError(f"config key {key} = {text!r}: expected 'module:function' or 'path/to/file.py:function'")
    return m.group("where"), m.group("name")


def module_name(path: str) -> str:
    """The name a factory file's module is registered under (``sys.modules``): its stem and 8 hex
    digits of the path as configured, the same in every job that reads the same config."""
    stem = re.sub(r"\W", "_", Path(path).stem)
    return f"mia_audit_factory_{stem}_{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def load_module(where: str, key: str):
    """The factory's module: a ``.py`` file (relative to the working directory) or an importable module."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ConfigError(
                f"config key {key}: the file {where} does not exist (a path relative to the working directory "
                f"{Path.cwd()}, or an absolute path)"
            )
        name = module_name(where)
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise ConfigError(f"config key {key}: importing {where} failed ({type(e).__name__}: {e})") from e
        return module
    try:
        return importlib.import_module(where)
    except Exception as e:
        raise ConfigError(f"config key {key}: module {where!r} cannot be imported ({type(e).__name__}: {e})") from e


def resolve(text: str, key: str) -> Callable:
    """The factory function a ``model.factory`` string names."""
    where, name = split(text, key)
    module = load_module(where, key)
    fn = getattr(module, name, None)
    if fn is None:
        raise ConfigError(f"config key {key}: {where} has no function {name!r}")
    if not callable(fn):
        raise ConfigError(f"config key {key}: {where}:{name} is a {type(fn).__name__}, not a function")
    return fn


def check_signature(fn: Callable, required: Iterable[str], kwargs: Iterable[str], key: str, text: str) -> None:
    """``fn`` accepts the keyword arguments ``required`` (given by the workflow) and ``kwargs``
    (from ``model.kwargs``), and needs no other."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    params = sig.parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    given = [*required, *kwargs]
    unknown = [a for a in given if a not in named and not var_kw]
    needed = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    missing = [n for n in needed if n not in given]
    if unknown or missing:
        what = "; ".join(
            ([f"it does not accept {unknown}"] if unknown else []) + ([f"it needs {missing}"] if missing else [])
        )
        want = f"({', '.join([*required, '**kwargs'])})"
        raise ConfigError(
            f"config key {key}: {text} has the signature {name_of(fn)}{sig}, but is called as {want} "
            f"with model.kwargs {sorted(kwargs)}: {what}"
        )


def name_of(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)
