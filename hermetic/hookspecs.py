"""The contract between hermetic and its plugins.

Every extension point is here. Built-in rules and platform plugins implement
these hooks exactly as a third-party plugin would, and are found the same way:
through the ``hermetic`` entry-point group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from hermetic.fetch import FetcherRegistry
    from hermetic.model import Platform, Toolchain
    from hermetic.rules import RuleRegistry
    from hermetic.sandbox import Sandbox, SandboxConfig

hookspec = pluggy.HookspecMarker("hermetic")
hookimpl = pluggy.HookimplMarker("hermetic")


@hookspec(historic=True)
def hermetic_register_rules(registry: RuleRegistry) -> None:
    """Add rule kinds to *registry* with ``registry.add`` / ``registry.rule``.

    Replayed for plugins registered after the first call.
    """


@hookspec(historic=True)
def hermetic_register_fetchers(registry: FetcherRegistry) -> None:
    """Add URL-scheme fetchers and signature verifiers to *registry*."""


@hookspec(firstresult=True)
def hermetic_host_platform() -> Platform | None:
    """Return the platform hermetic is running on, or None to let another
    plugin answer."""


@hookspec(firstresult=True)
def hermetic_toolchain(kind: str, target: Platform, host: Platform, cache_dir: Path) -> Toolchain | None:
    """Return the *kind* toolchain ("cc", "python", ...) that runs on *host*
    and builds for *target*.

    Return None to let another plugin answer. Stops at first non-None result.
    Probing a tool (running ``--version``, hashing its binary) is allowed here;
    cache what you learn under *cache_dir* (the build's store, ``--cache-dir``:
    :func:`hermetic.toolchain.probe_cached` does), the no-op build calls this
    every time. Download nothing here: a toolchain that comes as a package
    names it (``Toolchain.package``) and the engine fetches it by actions,
    only when one that uses it runs.
    """


@hookspec(firstresult=True)
def hermetic_sandbox(host: Platform, config: SandboxConfig) -> Sandbox | None:
    """Return the sandbox that isolates actions on *host*, or None.

    *config.mode* is what the user asked for ("auto", "bwrap", "none", ...).
    """
