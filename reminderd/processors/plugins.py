"""Third-party processors, loaded by ``module:Class`` path or by entry point.

A plugin class is constructed as ``cls(name, options, ctx)`` and its instance must
satisfy the ``Processor`` protocol with coroutine methods. Everything that can go wrong
while loading becomes a ``ConfigError`` naming ``processors.<name>``, so a bad plugin is
reported like any other config mistake (and a SIGHUP reload keeps the old config).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from reminderd.config.processors import PluginSettings
from reminderd.errors import ConfigError
from reminderd.processors.base import Processor, ProcessorContext

ENTRY_POINT_GROUP = "reminderd.processors"


def load_plugin(name: str, settings: PluginSettings, ctx: ProcessorContext) -> Processor:
    """Resolve, construct and check the plugin configured as ``processors.<name>``."""
    where, factory = _resolve(name, settings)
    if not callable(factory):
        raise ConfigError(f"processors.{name}: {where} is not callable")
    try:
        instance = factory(name, dict(settings.options), ctx)
    except Exception as exc:
        raise ConfigError(f"processors.{name}: {where} raised {type(exc).__name__}: {exc}") from exc
    return _check_protocol(name, where, instance)


def _resolve(name: str, settings: PluginSettings) -> tuple[str, Any]:
    """The plugin's description for messages and the object it names."""
    if settings.path and settings.entry_point:
        raise ConfigError(f"processors.{name}: set either 'path' or 'entry_point', not both")
    if settings.path:
        return repr(settings.path), _import_path(name, settings.path)
    if settings.entry_point:
        return _load_entry_point(name, settings.entry_point)
    raise ConfigError(f"processors.{name}: a plugin needs 'path' (module:Class) or 'entry_point'")


def _import_path(name: str, path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"processors.{name}: path {path!r} must look like 'package.module:Class'")
    module = _import_module(name, module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"processors.{name}: module {module_name!r} has no attribute {attr!r}") from None


def _import_module(name: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_prefix(exc.name, module_name):
            raise ConfigError(f"processors.{name}: module {module_name!r} not found") from exc
        raise ConfigError(f"processors.{name}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise ConfigError(
            f"processors.{name}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _is_prefix(missing: str, module_name: str) -> bool:
    """True when the missing module is ``module_name`` itself or one of its parents."""
    return module_name == missing or module_name.startswith(missing + ".")


def _load_entry_point(name: str, ep_name: str) -> tuple[str, Any]:
    found = list(entry_points(group=ENTRY_POINT_GROUP, name=ep_name))
    if not found:
        installed = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
        known = ", ".join(installed) or "none"
        raise ConfigError(
            f"processors.{name}: no entry point {ep_name!r} in group {ENTRY_POINT_GROUP!r}"
            f" (installed: {known})"
        )
    if len({ep.value for ep in found}) > 1:
        providers = ", ".join(sorted(_provider(ep) for ep in found))
        raise ConfigError(
            f"processors.{name}: entry point {ep_name!r} is ambiguous (provided by {providers})"
        )
    ep = found[0]
    where = f"entry point {ep_name!r} ({ep.value})"
    try:
        return where, ep.load()
    except Exception as exc:
        raise ConfigError(f"processors.{name}: loading {where} failed: {type(exc).__name__}: {exc}") from exc


def _provider(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} ({ep.value})" if dist is not None else ep.value


def _check_protocol(name: str, where: str, instance: object) -> Processor:
    """Fail at load time, not at the first occurrence, when the instance is not a processor."""
    problems = [
        f"{method}() must be an async method"
        for method in ("__call__", "aclose")
        if not _is_coroutine_method(getattr(instance, method, None))
    ]
    if problems or not isinstance(instance, Processor):
        raise ConfigError(f"processors.{name}: {where} did not build a Processor: {'; '.join(problems)}")
    return instance


def _is_coroutine_method(method: Callable[..., Any] | None) -> bool:
    return method is not None and inspect.iscoroutinefunction(method)
