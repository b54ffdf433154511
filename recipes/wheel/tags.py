"""The wheel's platform tag from what was linked (the facts
``inspect_binary.py`` read out of each extension), never from what the
build meant to target. Runs inside the sandbox, imported by mkwheel.py.

* ELF, glibc: ``manylinux_2_<Y>_<arch>``, Y the highest ``GLIBC_2.Y`` symbol
  version any extension requires (at least the architecture's PEP 599
  baseline), plus the legacy alias (``manylinux2014``) when the baseline
  allows it; ``linux_<arch>`` when it needs a library outside the manylinux
  policy (then it is only good for machines like the builder).
* ELF, musl: ``musllinux_<major>_<minor>_<arch>`` for the musl it linked.
* Mach-O: ``macosx_<major>_<minor>_<arch>`` from the minimum OS version
  recorded in the binary (``LC_BUILD_VERSION``).
* PE: ``win_amd64`` / ``win_arm64`` from the machine type.
"""

#: libraries every manylinux system has (PEP 599/600 policy)
MANYLINUX_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libgcc_s.so.1",
                  "libstdc++.so.6", "libnsl.so.1", "libutil.so.1", "libresolv.so.2", "libcrypt.so.1"}
#: the oldest glibc a manylinux tag can name per architecture (PEP 599)
GLIBC_FLOOR = {"x86_64": (2, 5), "i686": (2, 5), "aarch64": (2, 17), "ppc64le": (2, 17), "s390x": (2, 17)}
LEGACY = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}


class TagError(Exception):
    pass


def _v(text):
    return tuple(int(x) for x in text.split(".")[:2])


def platform_tag(all_facts, scheme, musl=""):
    """The platform part of the wheel tag (``a.b`` compressed set) for
    extensions described by *all_facts* (one dict per extension)."""
    if not all_facts:
        raise TagError("no extension to tag")
    formats = {f["format"] for f in all_facts}
    archs = {f["arch"] for f in all_facts}
    if len(formats) != 1 or len(archs) != 1:
        raise TagError(f"extensions of different kinds in one wheel: {sorted(formats)} {sorted(archs)}")
    fmt, arch = formats.pop(), archs.pop()
    if scheme == "linux":
        if fmt != "elf":
            raise TagError(f"a Linux wheel with a {fmt} extension")
        needed = {lib for f in all_facts for lib in f["needed"]}
        if musl:
            return f"musllinux_{musl.replace('.', '_')}_{arch}"
        if needed - MANYLINUX_LIBS and not all(lib.startswith("ld-linux") for lib in needed - MANYLINUX_LIBS):
            return f"linux_{arch}"
        need = max([_v(f["glibc"]) for f in all_facts if f.get("glibc")] + [GLIBC_FLOOR.get(arch, (2, 17))])
        tags = [f"manylinux_{need[0]}_{need[1]}_{arch}"]
        tags += [f"{name}_{arch}" for base, name in sorted(LEGACY.items())
                 if need <= base and base >= GLIBC_FLOOR.get(arch, (2, 17))][:1]
        return ".".join(tags)
    if scheme == "macosx":
        if fmt != "macho":
            raise TagError(f"a macOS wheel with a {fmt} extension")
        versions = [f["macos"] for f in all_facts if f.get("macos")]
        if len(versions) != len(all_facts):
            raise TagError("an extension records no minimum macOS version")
        major, minor = max(_v(v) for v in versions)
        if major >= 11:
            minor = 0  # since macOS 11, wheel tags name only the major version
        return f"macosx_{major}_{minor}_{'arm64' if arch == 'aarch64' else arch}"
    if scheme == "win":
        if fmt != "pe":
            raise TagError(f"a Windows wheel with a {fmt} extension")
        return {"x86_64": "win_amd64", "aarch64": "win_arm64"}[arch]
    raise TagError(f"no tag scheme {scheme!r}")
