"""``genrule``: a shell command in the sandbox, Bazel-style. ``$SRCS`` lists
the inputs' paths, ``$OUT`` is where the declared ``outs`` go."""

from __future__ import annotations

from hermetic.hookspecs import hookimpl
from hermetic.model import Provider
from hermetic.rules import DefaultInfo, RuleContext, RuleRegistry, attr


def _genrule(ctx: RuleContext) -> list[Provider]:
    if not ctx.attr.outs:
        raise ctx.error("a genrule needs at least one entry in outs")
    outs = [ctx.declare_output(o) for o in ctx.attr.outs]
    toolchains = [ctx.toolchain(kind) for kind in ctx.attr.toolchains]
    for s in ctx.attr.srcs:
        if any(c in s.path for c in " \"'$`\\"):
            raise ctx.error(f"{s.path}: a genrule input path may not contain spaces, quotes or $")
    srcs = " ".join(f"$IN/{s.path}" for s in ctx.attr.srcs)
    script = f'SRCS="{srcs}"\nset -eu\n{ctx.attr.cmd}'
    env = dict(ctx.attr.env)
    for name in ctx.attr.env_inherit:
        if name in env:
            raise ctx.error(f"{name} is both in env and in env_inherit", hint="keep it in one of them")
        value = ctx.client_env(name)
        if value is not None:  # unset stays unset: that too is in the key
            env[name] = value
    ctx.actions.run(["/bin/sh", "-c", script], inputs=ctx.attr.srcs, outputs=outs,
                    mnemonic=ctx.attr.mnemonic or "Genrule", toolchains=toolchains, env=env)
    return [DefaultInfo(tuple(outs))]


@hookimpl
def hermetic_register_rules(registry: RuleRegistry) -> None:
    registry.rule("genrule", attrs={
        "cmd": attr.string(mandatory=True, doc="shell script; inputs in $SRCS, write outs under $OUT"),
        "outs": attr.string_list(mandatory=True, doc="output file names"),
        "srcs": attr.files(),
        "toolchains": attr.string_list(doc='toolchain kinds it uses, e.g. ["cc"]: fingerprinted into the key'),
        "env": attr.string_dict(doc="variables set for the command"),
        "env_inherit": attr.string_list(doc="variables passed through from the environment hermetic runs in: "
                                            "their values are part of the action's key"),
        "mnemonic": attr.string(),
    }, doc="Run a shell command in the sandbox.")(_genrule)
