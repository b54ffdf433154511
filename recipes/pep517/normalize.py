"""Make the wheel a PEP 517 backend wrote deterministic and honestly tagged
(inside the sandbox, as ``python -I -S normalize.py --path SITE...
--helper FILE... --scheme SCHEME [--musl V] [--forbid-needed RE]... RAWDIR
OUTDIR FACTS``).

Each extension module in it is read with lief (inspect_binary.py's facts);
a needed library matching --forbid-needed fails the build (the library was
meant to be linked statically). The platform tag is computed from the facts
(tags.py), the WHEEL file's Tag lines and the file name follow it, and the
wheel is rewritten by mkwheel.write_wheel: entries sorted with the
dist-info last, one timestamp (SOURCE_DATE_EPOCH), fixed modes, a fresh
RECORD."""

import json
import os
import re
import sys
import time
import zipfile

EXTENSIONS = (".so", ".pyd", ".dylib")


def main(argv):
    opts = {"--path": [], "--helper": [], "--forbid-needed": [], "--scheme": [], "--musl": []}
    while argv and argv[0] in opts:
        opts[argv[0]].append(argv[1])
        argv = argv[2:]
    raw_dir, out_dir, facts_out = argv
    sys.path[:0] = [*opts["--path"], *dict.fromkeys(os.path.dirname(os.path.abspath(h)) for h in opts["--helper"])]
    from inspect_binary import facts
    from mkwheel import write_wheel
    from tags import TagError, platform_tag

    wheels = sorted(n for n in os.listdir(raw_dir) if n.endswith(".whl"))
    if len(wheels) != 1:
        sys.exit(f"the backend wrote {wheels or 'no wheel'}; expected exactly one wheel")
    raw = os.path.join(raw_dir, wheels[0])
    parts = wheels[0][:-4].split("-")
    dist, version = parts[0], parts[1]
    with zipfile.ZipFile(raw) as zf:
        members = [(i.filename, zf.read(i), bool((i.external_attr >> 16) & 0o111))
                   for i in zf.infolist() if not i.is_dir()]
    info = f"{dist}-{version}.dist-info"
    scratch = os.path.join(os.environ["WORK"], "ext")
    os.makedirs(scratch)
    found = {}
    for name, data, _ in members:
        if name.endswith(EXTENSIONS) and not name.startswith(info):
            path = os.path.join(scratch, name.replace("/", "_"))
            with open(path, "wb") as f:
                f.write(data)
            found[name] = facts(path)
            for pattern in opts["--forbid-needed"]:
                bad = [n for n in found[name]["needed"] if re.search(pattern, n)]
                if bad:
                    sys.exit(f"{name} needs {bad}: it was meant to link that library statically")
    if not found:
        sys.exit(f"{wheels[0]} holds no extension module: nothing native to tag")
    try:
        plat = platform_tag(list(found.values()), opts["--scheme"][0], (opts["--musl"] or [""])[0])
    except TagError as exc:
        sys.exit(f"cannot tag the wheel: {exc}")
    entries = []
    wheel_meta = None
    for name, data, x in members:
        if name == f"{info}/RECORD" or name.startswith(f"{info}/RECORD."):
            continue  # rewritten (signatures of the old RECORD would no longer hold)
        if name == f"{info}/WHEEL":
            wheel_meta = data.decode()
            continue
        entries.append((name, data, x or name.endswith(EXTENSIONS)))
    if wheel_meta is None:
        sys.exit(f"{wheels[0]} has no {info}/WHEEL")
    old_tags = [ln.split(":", 1)[1].strip() for ln in wheel_meta.splitlines() if ln.startswith("Tag:")]
    pyabi = sorted({t.rsplit("-", 1)[0] for t in old_tags})
    lines = [ln for ln in wheel_meta.splitlines() if ln and not ln.startswith("Tag:")]
    lines += [f"Tag: {pa}-{p}" for pa in pyabi for p in plat.split(".")]
    entries.append((f"{info}/WHEEL", ("\n".join(lines) + "\n").encode(), False))
    entries.sort(key=lambda e: (e[0].startswith(f"{info}/"), e[0]))
    pys = ".".join(sorted({pa.split("-")[0] for pa in pyabi}))
    abis = ".".join(sorted({pa.split("-")[1] for pa in pyabi}))
    name = f"{dist}-{version}-{pys}-{abis}-{plat}.whl"
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
    os.makedirs(out_dir, exist_ok=True)
    write_wheel(os.path.join(out_dir, name), entries, info, time.gmtime(epoch)[:6])
    with open(facts_out, "w") as f:
        json.dump({"wheel": name, "built_as": wheels[0], "extensions": found}, f, indent=1, sort_keys=True)
    print(f"{wheels[0]} -> {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
