"""Run a source distribution's own PEP 517 backend (inside the sandbox, as
``python -I -S build.py --path SITE... SRC OUTDIR``).

Build requirements come only from the pinned wheels given with --path
(unpacked, put first on sys.path): nothing is installed and the index is
never asked. The backend's requirements (``[build-system] requires`` and
``get_requires_for_build_wheel``) are checked against them first, so a
missing pin is named, not discovered halfway through a compile."""

import importlib
import importlib.metadata
import os
import re
import shutil
import sys


def _name(requirement):
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else None


def _applies(requirement):
    """Evaluate an environment marker with packaging when it is pinned (it
    is a build requirement of most backends), else keep the requirement."""
    if ";" not in requirement:
        return True
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return True
    req = Requirement(requirement)
    return req.marker is None or req.marker.evaluate()


def check(requirements, where):
    have = {_name(d.metadata["Name"]) for d in importlib.metadata.distributions()}
    missing = sorted({r for r in requirements if _applies(r) and _name(r) not in have})
    if missing:
        sys.exit(f"{where} needs {', '.join(missing)}, which is not among the pinned build requirements: "
                 "add a python_wheel pin for it to build_requires")


FILTER = """#!/bin/sh
# drop the host's include and library directories a backend adds by itself
# (setuptools: -I<INCLUDEPY>, -L<LIBDIR> of a shared libpython), so a
# hermetic compiler never finds a host header or library through them
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case "$a" in
    -I/usr/*|-L/usr/*|-L/lib*|-isystem/usr/*) ;;
    *) set -- "$@" "$a" ;;
  esac
done
exec %s "$@"
"""


def _host_dirs_filter():
    """CC and LDSHARED through a filter of host directories (the copied
    interpreter headers stand in for -I/usr/include/pythonX.Y)."""
    bindir = os.path.join(os.environ["WORK"], "hermetic-cc")
    os.makedirs(bindir)
    cc = os.environ.get("CC", "cc")
    path = os.path.join(bindir, "cc")
    with open(path, "w") as f:
        f.write(FILTER % cc)
    os.chmod(path, 0o755)
    os.environ["CC"] = path
    os.environ["LDSHARED"] = f"{path} -shared"


def _target_python(tree, platform):
    """Build for another CPU's interpreter (*tree*, the same release as this
    one), as crossenv does: this interpreter runs the backend, but sysconfig
    answers with the target's data (extension suffix, flags) and names its
    platform; the target's headers are compiled against. Returns its include
    directory."""
    import glob

    lib = glob.glob(os.path.join(tree, "lib", "python3.*"))[0]
    data = glob.glob(os.path.join(lib, "_sysconfigdata_*.py"))[0]
    where = os.path.join(os.environ["WORK"], "target-sysconfig")
    os.makedirs(where)
    shutil.copy(data, where)
    os.environ["_PYTHON_SYSCONFIGDATA_NAME"] = os.path.basename(data)[:-3]
    os.environ["_PYTHON_HOST_PLATFORM"] = platform
    sys.path.insert(0, where)
    return os.path.join(tree, "include", os.path.basename(lib)), where


def _python_headers(inc=None):
    """A copy of this interpreter's C headers (or the target interpreter's,
    *inc*) under $WORK/pyinc, first on the include path: a cross compiler
    (zig, for a manylinux target) does not search /usr/include, where
    Debian's pyconfig.h sends Python.h for the multiarch part. Nothing else
    of /usr/include becomes visible."""
    import sysconfig

    inc = inc or sysconfig.get_paths()["include"]
    root = os.path.join(os.environ["WORK"], "pyinc")
    shutil.copytree(inc, os.path.join(root, os.path.basename(inc)))
    multiarch = sysconfig.get_config_var("MULTIARCH")
    arch_inc = os.path.join(os.path.dirname(inc), multiarch or "-", os.path.basename(inc))
    if multiarch and os.path.isdir(arch_inc):
        shutil.copytree(arch_inc, os.path.join(root, multiarch, os.path.basename(inc)))
    flags = f"-I{os.path.join(root, os.path.basename(inc))} -I{root}"
    os.environ["CFLAGS"] = f"{flags} {os.environ.get('CFLAGS', '')}".strip()


def main(argv):
    opts = {"--path": [], "--frontend-path": [], "--include": [], "--lib": [], "--version-script": [],
            "--target-python": [], "--target-platform": []}
    hermetic_cc = False
    config_settings = {}  # PEP 517: a key given twice is a list
    while argv and (argv[0] in opts or argv[0] in ("--hermetic-cc", "--config-setting")):
        if argv[0] == "--hermetic-cc":
            hermetic_cc, argv = True, argv[1:]
            continue
        if argv[0] == "--config-setting":
            key, _, value = argv[1].partition("=")
            old = config_settings.get(key)
            config_settings[key] = value if old is None else [*(old if isinstance(old, list) else [old]), value]
            argv = argv[2:]
            continue
        opts[argv[0]].append(argv[1] if argv[0] == "--target-platform" else os.path.abspath(argv[1]))
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    src, out = argv
    paths = opts["--path"]
    target_inc = None
    if opts["--target-python"]:  # before anything reads sysconfig: it caches what it read
        target_inc, where = _target_python(opts["--target-python"][0], opts["--target-platform"][0])
        paths = [where, *paths]
    # the native libraries: headers first, static archives the only thing in their directories' -L
    cflags = [f"-I{d}" for d in opts["--include"]]
    ldflags = [f"-L{d}" for d in dict.fromkeys(os.path.dirname(f) for f in opts["--lib"])]
    ldflags += [f"-Wl,--version-script={v}" for v in opts["--version-script"]]
    import sysconfig

    # setuptools drops the interpreter's CFLAGS (-O3 -DNDEBUG ...) once CFLAGS is set: keep them (an
    # unoptimized zig build is a Debug build with UBSan, whose file names ignore the prefix maps)
    cflags.append(sysconfig.get_config_var("CFLAGS") or "")
    for var, add in (("CFLAGS", cflags), ("LDFLAGS", ldflags)):
        if add:
            os.environ[var] = " ".join([*add, os.environ.get(var, "")]).strip()
    if hermetic_cc:
        _host_dirs_filter()
    # the backend's wheel records the modes of the files it wrote: fix what it could observe
    os.umask(0o022)
    sys.path[:0] = paths
    sys.path += opts["--frontend-path"]  # what this script itself needs (tomli before 3.11), after the backend's
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)  # for anything the backend runs with sys.executable
    work = os.path.join(os.environ["WORK"], "src")
    shutil.copytree(src, work, symlinks=True)  # the backend writes build/ and egg-info/ in its tree
    for top, dirs, files in os.walk(work):  # ... also into files the sdist ships (its egg-info/): writable
        for name in [*dirs, *files]:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o200)
    os.chdir(work)
    _python_headers(target_inc)
    try:
        import tomllib
    except ImportError:  # before 3.11: the pinned tomli the rule put on --frontend-path
        import tomli as tomllib  # type: ignore[no-redef]

    system = {}
    if os.path.exists("pyproject.toml"):
        with open("pyproject.toml", "rb") as f:
            system = tomllib.load(f).get("build-system", {})
    check(system.get("requires", ["setuptools>=40.8.0"]), "[build-system] requires")
    spec = system.get("build-backend", "setuptools.build_meta:__legacy__")
    for p in reversed(system.get("backend-path", [])):
        sys.path.insert(0, os.path.abspath(p))
    mod, _, obj = spec.partition(":")
    backend = importlib.import_module(mod)
    for part in filter(None, obj.split(".")):
        backend = getattr(backend, part)
    hook = getattr(backend, "get_requires_for_build_wheel", None)
    if hook is not None:
        check(hook(dict(config_settings)), f"the backend {spec}")
    os.makedirs(out, exist_ok=True)
    name = backend.build_wheel(out, dict(config_settings))
    print(f"built {name} with {spec}")


if __name__ == "__main__":
    main(sys.argv[1:])
