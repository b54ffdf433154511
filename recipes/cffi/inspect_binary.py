"""Read what a linked extension module actually is, and check it (runs inside
the sandbox, as: python -I -S inspect_binary.py [--path DIR]... SO OUT
--allow SYMBOL... [--forbid-needed PATTERN]...; lief comes from --path).

Writes OUT as JSON facts the wheel's platform tag is computed from: the
format (elf, macho, pe), the machine, exported and imported symbols, the
shared libraries it needs, the highest glibc symbol version it requires
(ELF), the minimum macOS version (Mach-O). Fails when it exports anything
but the allowed symbols or needs a forbidden library."""

import json
import re
import sys

# symbols a linker adds by itself, not the module's: zig's Mach-O linker
# exports the image header and the DSO handle
SYNTHESIZED = {"macho": {"__mh_dylib_header", "___dso_handle"}}
MACHINES = {"elf": {"X86_64": "x86_64", "AARCH64": "aarch64"},
            "macho": {"X86_64": "x86_64", "ARM64": "aarch64"},
            "pe": {"AMD64": "x86_64", "ARM64": "aarch64"}}


def _enum_name(value):  # type: ignore[no-untyped-def]
    """An enum member's name, as lief's releases spell it (a class in some, a member in others)."""
    return getattr(value, "__name__", None) or str(value).rsplit(".", 1)[-1]


def facts(path):
    import lief

    lief.logging.disable()
    binary = lief.parse(path)
    if binary is None:
        sys.exit(f"{path}: not an ELF, Mach-O or PE file")
    out = {}
    if isinstance(binary, lief.ELF.Binary):
        out["format"] = "elf"
        out["machine"] = _enum_name(binary.header.machine_type)
        out["exports"] = sorted({s.name for s in binary.dynamic_symbols if s.exported and s.name})
        out["needed"] = sorted(binary.libraries)
        versions = {}
        for req in binary.symbols_version_requirement:
            for aux in req.get_auxiliary_symbols():
                name, _, ver = aux.name.partition("_")
                versions.setdefault(name, set()).add(ver)
        out["symbol_versions"] = {k: sorted(v, key=_vkey) for k, v in sorted(versions.items())}
        glibc = out["symbol_versions"].get("GLIBC", [])
        out["glibc"] = max(glibc, key=_vkey) if glibc else None
        out["interpreter"] = binary.interpreter if binary.has_interpreter else None
    elif isinstance(binary, lief.MachO.Binary):
        out["format"] = "macho"
        out["machine"] = _enum_name(binary.header.cpu_type)
        trie = binary.dyld_exports_trie if binary.has_dyld_exports_trie else \
            binary.dyld_info if binary.has_dyld_info else None
        out["exports"] = sorted({e.symbol.name for e in trie.exports}) if trie else []
        out["needed"] = sorted(lib.name for lib in binary.libraries)
        minos = binary.build_version.minos if binary.has_build_version else \
            binary.version_min.version if binary.has_version_min else None
        out["macos"] = ".".join(str(x) for x in minos[:2]) if minos else None
        out["undefined_dynamic_lookup"] = any(s.name.startswith("_Py") for s in binary.imported_symbols)
    elif isinstance(binary, lief.PE.Binary):
        out["format"] = "pe"
        out["machine"] = _enum_name(binary.header.machine)
        export = binary.get_export()
        out["exports"] = sorted(e.name for e in export.entries) if export else []
        out["needed"] = sorted(imp.name for imp in binary.imports)
        out["timestamp"] = binary.header.time_date_stamps
    else:
        sys.exit(f"{path}: unsupported format {type(binary).__name__}")
    out["arch"] = MACHINES[out["format"]].get(out["machine"], out["machine"].lower())
    return out


def _vkey(v):
    return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.]", v))


def main(argv):
    paths, allow, forbid = [], [], []
    while argv and argv[0].startswith("--"):
        flag, value = argv[0], argv[1]
        {"--path": paths, "--allow": allow, "--forbid-needed": forbid}[flag].append(value)
        argv = argv[2:]
    sys.path[:0] = paths
    so, out = argv
    f = facts(so)
    expected = set(allow) | {"_" + a for a in allow if f["format"] == "macho"}
    extra = [s for s in f["exports"] if s not in expected and s not in SYNTHESIZED.get(f["format"], ())]
    if extra:
        sys.exit(f"{so} exports symbols other than {sorted(allow)}: {extra[:20]}"
                 f"{' ...' if len(extra) > 20 else ''}")
    if not expected & set(f["exports"]):
        sys.exit(f"{so} does not export {sorted(allow)} (exports: {f['exports'][:20]})")
    bad = [lib for lib in f["needed"] if any(re.search(p, lib) for p in forbid)]
    if bad:
        sys.exit(f"{so} links dynamically against {bad}: they must be linked statically")
    with open(out, "w") as fh:
        json.dump(f, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
