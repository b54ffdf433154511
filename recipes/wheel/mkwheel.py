"""Write a wheel deterministically (runs inside the sandbox).

Entries sorted, dist-info last (RECORD at the very end), every timestamp set
to SOURCE_DATE_EPOCH (not before 1980, the zip format's epoch), modes 0644 or
0755, no extra fields, one compression level."""

import base64
import hashlib
import json
import os
import sys
import time
import zipfile


def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def main(spec_path, out_dir):
    with open(spec_path) as f:
        spec = json.load(f)
    in_root = os.environ["IN"]
    if "platform" in spec:  # the tag of what was linked, read now (see tags.py)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's dir out
        from tags import TagError, platform_tag

        facts = []
        for path in spec["platform"]["facts"]:
            with open(os.path.join(in_root, path)) as f:
                facts.append(json.load(f))
        try:
            plat = platform_tag(facts, spec["platform"]["scheme"], spec["platform"].get("musl", ""))
        except TagError as exc:
            sys.exit(f"cannot tag the wheel: {exc}")
        spec["tag"] = f"{spec['python_tag']}-{spec['abi_tag']}-{plat}"
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
    stamp = time.gmtime(epoch)[:6]
    info = f"{spec['distribution']}-{spec['version']}.dist-info"
    entries = []
    for arcname, path in spec["files"]:
        full = os.path.join(in_root, path)
        with open(full, "rb") as f:
            entries.append((arcname, f.read(), os.access(full, os.X_OK) or arcname.endswith((".so", ".pyd"))))
    meta = ["Metadata-Version: 2.1", f"Name: {spec['name']}", f"Version: {spec['version']}"]
    if spec.get("summary"):
        meta.append(f"Summary: {spec['summary']}")
    if spec.get("license"):
        meta.append(f"License: {spec['license']}")
    if spec.get("requires_python"):
        meta.append(f"Requires-Python: {spec['requires_python']}")
    meta += [f"Requires-Dist: {r}" for r in spec.get("requires_dist", [])]
    purelib = spec["tag"].endswith("-none-any")
    py, abi, plats = spec["tag"].split("-")
    wheel = ["Wheel-Version: 1.0", f"Generator: {spec['generator']}",
             f"Root-Is-Purelib: {'true' if purelib else 'false'}"]
    wheel += [f"Tag: {py}-{abi}-{p}" for p in plats.split(".")]
    tops = sorted({a.split("/", 1)[0] for a, _, _ in entries})
    entries.sort()
    entries.append((f"{info}/METADATA", ("\n".join(meta) + "\n").encode(), False))
    entries.append((f"{info}/WHEEL", ("\n".join(wheel) + "\n").encode(), False))
    entries.append((f"{info}/top_level.txt", ("\n".join(tops) + "\n").encode(), False))
    os.makedirs(out_dir, exist_ok=True)
    write_wheel(os.path.join(out_dir, f"{spec['distribution']}-{spec['version']}-{spec['tag']}.whl"),
                entries, info, stamp)


def write_wheel(out, entries, info, stamp):
    """*entries* (arcname, bytes, executable) in the order given, then a
    RECORD of them, every one with the same timestamp and fixed modes."""
    record = [f"{a},{_hash(d)},{len(d)}" for a, d, _ in entries] + [f"{info}/RECORD,,"]
    entries = [*entries, (f"{info}/RECORD", ("\n".join(record) + "\n").encode(), False)]
    with zipfile.ZipFile(out, "w") as zf:
        for arcname, data, executable in entries:
            zi = zipfile.ZipInfo(arcname, date_time=stamp)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = ((0o100755 if executable else 0o100644) << 16)
            zf.writestr(zi, data, compresslevel=9)


if __name__ == "__main__":
    main(*sys.argv[1:])
