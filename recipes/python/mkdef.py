"""Write the module-definition (.def) file of CPython's stable-ABI DLL from
``PC/python3dll.c`` of the pinned source (runs inside the sandbox, as:
python mkdef.py DLL PATH_UNDER_IN OUT). That file lists every export as
``EXPORT_FUNC(name)`` or ``EXPORT_DATA(name)``; data exports are marked DATA
so the import library gives only ``__imp_`` pointers for them."""

import os
import re
import sys


def main(dll, source, out):
    with open(os.path.join(os.environ["IN"], source)) as f:
        text = f.read()
    exports = re.findall(r"^EXPORT_(FUNC|DATA)\((\w+)\)", text, re.M)
    if len(exports) < 100:
        sys.exit(f"{source}: found only {len(exports)} exports; not CPython's python3dll.c?")
    lines = [f"LIBRARY {dll}", "EXPORTS"]
    lines += [f"    {name}" + (" DATA" if kind == "DATA" else "") for kind, name in sorted(exports, key=lambda e: e[1])]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
