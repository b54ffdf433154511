"""The plugin manager and the typed façade core code calls hooks through."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, final

import pluggy

from hermetic import hookspecs

if TYPE_CHECKING:
    from pathlib import Path

    from hermetic.fetch import FetcherRegistry
    from hermetic.model import Platform, Toolchain
    from hermetic.rules import RuleRegistry
    from hermetic.sandbox import Sandbox, SandboxConfig

ENTRY_POINT_GROUP = "hermetic"


def make_plugin_manager(*, load_entry_points: bool = True, extra: tuple[Any, ...] = ()) -> pluggy.PluginManager:
    """A PluginManager with every installed plugin loaded.

    Built-in rules and platform plugins are installed as entry points of this
    same group. ``HERMETIC_DISABLE_PLUGINS=name,name`` blocks plugins by entry
    point name.
    """
    pm = pluggy.PluginManager("hermetic")
    pm.add_hookspecs(hookspecs)
    for name in filter(None, (os.environ.get("HERMETIC_DISABLE_PLUGINS", "")).split(",")):
        pm.set_blocked(name.strip())
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


@final
class Hooks:
    """Typed calls into the plugins."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    def register_rules(self, registry: RuleRegistry) -> None:
        self.pm.hook.hermetic_register_rules.call_historic(kwargs={"registry": registry})

    def register_fetchers(self, registry: FetcherRegistry) -> None:
        self.pm.hook.hermetic_register_fetchers.call_historic(kwargs={"registry": registry})

    def host_platform(self) -> Platform | None:
        return self.pm.hook.hermetic_host_platform()  # type: ignore[no-any-return]

    def toolchain(self, kind: str, target: Platform, host: Platform, cache_dir: Path) -> Toolchain | None:
        return self.pm.hook.hermetic_toolchain(  # type: ignore[no-any-return]
            kind=kind, target=target, host=host, cache_dir=cache_dir)

    def sandbox(self, host: Platform, config: SandboxConfig) -> Sandbox | None:
        return self.pm.hook.hermetic_sandbox(host=host, config=config)  # type: ignore[no-any-return]
