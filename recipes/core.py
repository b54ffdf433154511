"""The rules every workspace uses whatever it builds: ``filegroup`` (a named
set of files) and ``alias`` (another name for a target, optionally built for
another platform)."""

from __future__ import annotations

from hermetic.hookspecs import hookimpl
from hermetic.model import Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr


def _filegroup(ctx: RuleContext) -> list[Provider]:
    return [DefaultInfo(tuple(ctx.attr.srcs))]


def _alias(ctx: RuleContext) -> list[Provider]:
    # the actual target is analysed for this one's platform (its `platform`
    # attribute, if any): an alias is how one rule graph is named per platform
    return list(ctx.attr.actual.providers)


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("filegroup", attrs={"srcs": attr.files(mandatory=True)},
                  doc="A named set of files.")(_filegroup)
    registry.rule("alias", attrs={"actual": attr.label(mandatory=True, doc="the target this one stands for")},
                  doc="Another name for a target; with `platform`, that target built for that platform.")(_alias)
