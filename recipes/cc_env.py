"""The environment a ``./configure``/``./Configure`` + make build of a C
library gets: the cc toolchain's wrappers by bare name, make (and perl)
from the host, and the source release's own timestamp."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

from hermetic.model import Artifact, Toolchain
from hermetic.providers import CcInfo, SourceInfo


def make_env(cc: Toolchain, make: Toolchain, source: SourceInfo, *, perl: bool = False) -> dict[str, str]:
    """CC, AR, RANLIB (the compiler's wrappers: bare names, so no path is
    recorded in what the build writes), MAKE (and PERL), and
    SOURCE_DATE_EPOCH when the source pins its release date."""
    env = {"CC": cc.tool("cc"), "AR": cc.tool("ar"), "RANLIB": cc.tool("ranlib"), "MAKE": make.tool("make")}
    if perl:
        env["PERL"] = make.tool("perl")
    if source.source_date_epoch:
        env["SOURCE_DATE_EPOCH"] = str(source.source_date_epoch)  # "built on:" = the release date
    return env


#: pkg-config names an upstream install gives a set of libraries (OpenSSL: openssl.pc)
UPSTREAM_PC = {"openssl": frozenset({"libssl", "libcrypto"})}


def dep_env_script(deps: Sequence[Any]) -> tuple[list[str], list[Artifact]]:
    """Shell lines that give a configure script the libraries *deps* (targets
    with a CcInfo) built: ``CPPFLAGS``/``LDFLAGS``/``LIBS`` naming their
    headers and the directories of their static archives, and a pkg-config
    file for each archive (``libcrypto.pc``) and each target (``zlib.pc``,
    ``openssl.pc``), which pkg-config sees and nothing of the host's
    (``PKG_CONFIG_LIBDIR``). Returns the lines and the inputs they read."""
    q = shlex.quote
    lines = ['mkdir -p "$WORK/pkgconfig"', 'export PKG_CONFIG_LIBDIR="$WORK/pkgconfig" PKG_CONFIG_PATH=']
    inputs: list[Artifact] = []
    cppflags: list[str] = []
    ldflags: list[str] = []
    libs: list[str] = []

    def pc(name: str, label: Any, version: str, cflags: str, link: str) -> str:
        return (f'printf "Name: {name}\\nDescription: {name}, built by {label}\\nVersion: %s\\n'
                f'Cflags: %s\\nLibs: %s\\n" {q(version or "0")} "{cflags}" "{link}" >"$WORK/pkgconfig/{name}.pc"')

    for dep in deps:
        lib = dep[CcInfo]
        incs = " ".join(f"-I$IN/{i.path}" for i in lib.includes)
        cppflags.append(incs)
        inputs += [*lib.includes, *lib.archives]
        extra = ""
        if lib.link_flags is not None:
            inputs.append(lib.link_flags)
            extra = f'$(cat "$IN/{lib.link_flags.path}")'
            libs.append(extra)
        every = []
        for archive in lib.archives:
            libdir = f"$IN/{archive.path.rsplit('/', 1)[0]}"
            if f"-L{libdir}" not in ldflags:
                ldflags.append(f"-L{libdir}")
            stem = archive.name.removesuffix(".a")
            every.append(f"-L{libdir} -l{stem.removeprefix('lib')}")
            lines.append(pc(stem, dep.label, lib.version, incs, f"{every[-1]} {extra}".strip()))
        stems = {a.name.removesuffix(".a") for a in lib.archives}
        names = {dep.label.name} if re.fullmatch(r"[\w.+-]+", dep.label.name) else set()
        # the name upstream's own install gives it: configure scripts ask pkg-config for "openssl"
        # (and, not finding it, search /usr: the host's headers), whatever the target is called
        names |= {upstream for upstream, parts in UPSTREAM_PC.items() if parts <= stems}
        for name in sorted(names):
            if name in stems or f"lib{name}" in stems:
                continue
            lines.append(pc(name, dep.label, lib.version, incs, f"{' '.join(every)} {extra}".strip()))
    if cppflags:
        lines.append(f'export CPPFLAGS="{" ".join(cppflags)}${{CPPFLAGS:+ $CPPFLAGS}}" '
                     f'LDFLAGS="{" ".join(ldflags)}${{LDFLAGS:+ $LDFLAGS}}" LIBS="{" ".join(libs)}${{LIBS:+ $LIBS}}"')
    return lines, inputs
