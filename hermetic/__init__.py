"""hermetic: Nix/Bazel-style hermetic build rules for Python wheels with native code."""

from __future__ import annotations

from hermetic.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl", "hookspec"]
