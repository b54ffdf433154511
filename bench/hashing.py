"""Hashing throughput of the store on a large file, next to OpenSSL's own
in-memory SHA-256 speed on this CPU, and the digest cache on a repeat.

    .venv/bin/python bench/hashing.py [--size-mb 1024]

- `openssl speed -evp sha256 -bytes 16384 -seconds 3` (one core, in memory);
- Store.put_file of a fresh file of --size-mb (read from the page cache,
  hashed, copied into the store), and hash_file alone; goal >= 80 % of
  OpenSSL's speed;
- Store.source_digest of the same file twice more: the second answer comes
  from the digest cache (inode, size, mtime, ctime) without reading it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hermetic._cache import Store, hash_file  # noqa: E402


def openssl_speed() -> float:
    out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "16384", "-seconds", "3"],
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.lower().startswith("sha256"))
    kbps = float(re.findall(r"([\d.]+)k", line)[-1])
    return kbps * 1000  # bytes/s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    args = ap.parse_args()
    ref = openssl_speed()
    print(f"openssl speed -evp sha256 (16 KiB blocks, 1 core): {ref / 1e9:6.2f} GB/s")
    with tempfile.TemporaryDirectory(prefix="hermetic-hash-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        big = Path(tmp) / "big.bin"
        chunk = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(args.size_mb):
                f.write(chunk)
        size = big.stat().st_size
        hash_file(big)  # into the page cache
        t0 = time.perf_counter()
        hash_file(big)
        t_hash = time.perf_counter() - t0
        store = Store(Path(tmp) / "store")
        t0 = time.perf_counter()
        store.put_file(big)
        t_put = time.perf_counter() - t0
        time.sleep(2.1)  # out of the racy window: the digest cache may remember it now
        store.source_digest(big)
        t0 = time.perf_counter()
        store.source_digest(big)
        t_again = time.perf_counter() - t0
    print(f"hash_file, {size >> 20} MiB from the page cache:      {size / t_hash / 1e9:6.2f} GB/s  "
          f"({size / t_hash / ref * 100:.0f} % of openssl; goal 80 %)")
    print(f"Store.put_file (hash + copy into the store):     {size / t_put / 1e9:6.2f} GB/s")
    print(f"source_digest again (digest cache hit):           {t_again * 1000:6.3f} ms for {size >> 20} MiB")


if __name__ == "__main__":
    main()
