"""What hermetic's remote-execution client and its worker agree on with
any Remote Execution API v2 implementation: the standard ``Action`` /
``Command`` / ``Directory`` Merkle tree for one of hermetic's ``run``
actions, the platform properties that route it to a worker whose host tools
give the same key, and the conversions between REAPI output trees and the
store's tree manifests.

The input root of a hermetic action, relative to the worker's working
directory (nothing in it names a path of the client's machine)::

    in/<artifact path>              the action's inputs, read-only
    in/.toolchains/<kind>/bin/...   toolchain wrapper scripts
    toolchains/<kind>/...           toolchain packages (the ziglang tree): a
                                    Directory the CAS holds once for every action
    out/, work/, home/, tmp/        made by the command itself

The command is ``/bin/sh -c SCRIPT``: the script sets ``$IN``, ``$OUT``,
``$WORK``, ``$HOME``, ``$TMPDIR``, ``$HERMETIC_TOOLCHAIN_<KIND>`` and ``PATH``
from the directory it starts in, makes the output and scratch directories,
enters ``$WORK`` (where a local sandbox starts too) and ``exec``s the
action's own argv. Any REAPI worker can run it; hermetic's worker runs it in
the same bubblewrap sandbox as a local build (the input root at
``/hermetic``), which is what makes its outputs bit-identical to local ones.
"""

from __future__ import annotations

import hashlib
import os
import platform as _platform
import posixpath
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hermetic.model import Action, Digest, Toolchain, sha256_json

#: the property names a scheduler must match actions and workers on
PROPERTY_KEYS = ("OSFamily", "ISA", "hermetic-sandbox", "hermetic-toolchain")
#: the REAPI platform lexicon's ISA names for what Python calls the machine
_ISA = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "arm-a64", "arm64": "arm-a64", "i686": "x86-32",
        "i386": "x86-32", "ppc64le": "power-isa-le", "riscv64": "riscv64"}
#: where toolchain packages travel inside the input root
TOOLCHAINS = "toolchains"


def isa(machine: str | None = None) -> str:
    m = (machine or _platform.machine()).lower()
    return _ISA.get(m, m)


def os_family(os_name: str) -> str:
    return {"darwin": "macos"}.get(os_name, os_name)


def sandbox_property(profile: Mapping[str, Any]) -> str:
    """The sandbox profile (part of every run action's key) as one value."""
    return sha256_json(dict(profile))


def host_toolchain(tc: Toolchain) -> bool:
    """Whether *tc* runs tools of the worker's own system (its fingerprint
    becomes a platform property) rather than traveling in the input root."""
    return bool(tc.tools) and tc.tree is None and tc.package is None


def platform_properties(action: Action, os_name: str, profile: Mapping[str, Any],
                        machine: str | None = None) -> list[tuple[str, str]]:
    """What a worker must offer to run *action* with the same key: its OS
    family and ISA, the same sandbox profile, and every host toolchain the
    action uses with the same fingerprint (a property may repeat)."""
    props = {("OSFamily", os_family(os_name)), ("ISA", isa(machine)),
             ("hermetic-sandbox", sandbox_property(profile))}
    props |= {("hermetic-toolchain", tc.fingerprint) for tc in action.toolchains if host_toolchain(tc)}
    return sorted(props)


# -- the input root ----------------------------------------------------------------


class MerkleTree:
    """An REAPI input root built from paths: files by digest, empty
    directories, symlinks; :meth:`finish` serializes every ``Directory``
    (entries sorted by name, deterministic encoding) bottom-up."""

    def __init__(self) -> None:
        from hermetic._protos import remote_cache_pb2

        self.pb = remote_cache_pb2
        # directory path ("" is the root) -> name -> ("file", Digest, x) | ("dir",) | ("link", target)
        self.dirs: dict[str, dict[str, tuple[Any, ...]]] = {"": {}}

    def _dir(self, path: str) -> dict[str, tuple[Any, ...]]:
        node = self.dirs.get(path)
        if node is None:
            parent, name = posixpath.split(path)
            self._dir(parent)[name] = ("dir",)
            node = self.dirs[path] = {}
        return node

    def add_file(self, path: str, digest: Digest, executable: bool = False) -> None:
        parent, name = posixpath.split(path)
        self._dir(parent)[name] = ("file", digest, executable)

    def add_dir(self, path: str) -> None:
        self._dir(path)

    def add_symlink(self, path: str, target: str) -> None:
        parent, name = posixpath.split(path)
        self._dir(parent)[name] = ("link", target)

    def add_manifest(self, prefix: str, manifest: Mapping[str, Any]) -> None:
        """A stored tree (its manifest) under *prefix*."""
        self.add_dir(prefix)
        for d in manifest["dirs"]:
            self.add_dir(f"{prefix}/{d}")
        for rel, h, size, x in manifest["files"]:
            self.add_file(f"{prefix}/{rel}", Digest(h, size), bool(x))
        for rel, target in manifest["links"]:
            self.add_symlink(f"{prefix}/{rel}", target)

    def directory(self, path: str, digests: Mapping[str, Digest]) -> Any:
        pb = self.pb
        d = pb.Directory()
        for name, node in sorted(self.dirs[path].items()):
            if node[0] == "file":
                d.files.add(name=name, digest=pb.Digest(hash=node[1].hash, size_bytes=node[1].size),
                            is_executable=node[2])
            elif node[0] == "dir":
                sub = digests[f"{path}/{name}" if path else name]
                d.directories.add(name=name, digest=pb.Digest(hash=sub.hash, size_bytes=sub.size))
            else:
                d.symlinks.add(name=name, target=node[1])
        return d

    def finish(self) -> tuple[Digest, dict[Digest, bytes], dict[str, Digest]]:
        """The root's digest, every Directory blob, and each directory's digest by path."""
        digests: dict[str, Digest] = {}
        blobs: dict[Digest, bytes] = {}
        for path in sorted(self.dirs, key=lambda p: (-p.count("/") if p else 1, p)):
            if path == "":
                continue
            data = self.directory(path, digests).SerializeToString(deterministic=True)
            digests[path] = Digest.of_bytes(data)
            blobs[digests[path]] = data
        data = self.directory("", digests).SerializeToString(deterministic=True)
        root = Digest.of_bytes(data)
        blobs[root] = data
        digests[""] = root
        return root, blobs, digests

    def files(self) -> Iterable[Digest]:
        for node in self.dirs.values():
            for entry in node.values():
                if entry[0] == "file":
                    yield entry[1]


# -- the command -------------------------------------------------------------------


def _word(arg: str | Mapping[str, str]) -> str:
    """One argv word as shell text: placeholders become ``"$IN"/'rel'``."""
    if not isinstance(arg, Mapping):
        return shlex.quote(arg)
    (kind, rel), = arg.items()
    var = {"in": "$IN", "out": "$OUT", "work": "$WORK"}[kind]
    return f'"{var}"/{shlex.quote(rel)}' if rel else f'"{var}"'


def command_script(action: Action, path: str) -> str:
    """The shell text that sets the layout up relative to the directory it
    starts in and runs *action*'s argv (*path* is the PATH after the
    toolchains' wrapper directories)."""
    prefix = action.output_dir + "/"
    parents = sorted({posixpath.dirname(o.path[len(prefix):]) for o in action.outputs
                      if not o.is_tree and "/" in o.path[len(prefix):]})
    exports = ['IN="$r/in"', 'OUT="$r/out"', 'WORK="$r/work"', 'HOME="$r/home"', 'TMPDIR="$r/tmp"']
    for tc in action.toolchains:
        if tc.tree is not None:
            exports.append(f'{tc.root_env}="$r/{TOOLCHAINS}/{tc.kind}"')
    bins = [f'"$r/in/{tc.bin_dir}"' for tc in action.toolchains if tc.wrappers]
    exports.append("PATH=" + ":".join([*bins, shlex.quote(path)]))
    dirs = ['"$OUT"', '"$WORK"', '"$HOME"', '"$TMPDIR"', *(f'"$OUT"/{shlex.quote(p)}' for p in parents)]
    return "\n".join([
        "r=$PWD",
        "export " + " ".join(exports),
        "mkdir -p " + " ".join(dirs),
        'cd "$WORK"',
        "exec " + " ".join(_word(a) for a in action.params["argv"]),
    ])


def command_env(action: Action, base: Mapping[str, str], jobs: int) -> tuple[dict[str, str], str]:
    """The static environment of the Command (sorted by name) and the PATH
    the script extends; layout-dependent variables are the script's."""
    env = dict(base)
    env.update(action.params["env"])
    for k in ("IN", "OUT", "WORK", "HOME", "TMPDIR"):
        env.pop(k, None)
    path = env.pop("PATH")
    env["HERMETIC_JOBS"] = str(jobs)
    return dict(sorted(env.items())), path


def output_paths(action: Action) -> list[str]:
    prefix = action.output_dir + "/"
    return sorted("out/" + o.path[len(prefix):] for o in action.outputs)


def build_command(action: Action, base_env: Mapping[str, str], props: Sequence[tuple[str, str]]) -> Any:
    from hermetic._protos import remote_cache_pb2 as pb

    env, path = command_env(action, base_env, action.cpus)
    cmd = pb.Command(arguments=["/bin/sh", "-c", command_script(action, path)], output_paths=output_paths(action))
    for k, v in env.items():
        cmd.environment_variables.add(name=k, value=v)
    for k, v in props:
        cmd.platform.properties.add(name=k, value=v)
    return cmd


def build_action(command_digest: Digest, root: Digest, props: Sequence[tuple[str, str]],
                 timeout: float | None = None) -> Any:
    from hermetic._protos import remote_cache_pb2 as pb

    a = pb.Action(command_digest=pb.Digest(hash=command_digest.hash, size_bytes=command_digest.size),
                  input_root_digest=pb.Digest(hash=root.hash, size_bytes=root.size))
    if timeout:
        a.timeout.FromSeconds(int(timeout))
    for k, v in props:
        a.platform.properties.add(name=k, value=v)
    return a


def serialize(message: Any) -> tuple[Digest, bytes]:
    data = message.SerializeToString(deterministic=True)
    return Digest(hashlib.sha256(data).hexdigest(), len(data)), data


# -- output trees ----------------------------------------------------------------------


def tree_to_manifest(tree: Any) -> dict[str, Any]:
    """A REAPI ``Tree`` as the store's tree manifest: the same manifest
    ``Store.put_tree`` makes for the same directory, so a tree built
    remotely and one built here have one digest."""
    by_digest: dict[str, Any] = {}
    for child in tree.children:
        d, _ = serialize(child)
        by_digest[d.hash] = child
    files: list[list[Any]] = []
    links: list[list[str]] = []
    dirs: list[str] = []

    def walk(directory: Any, rel: str, depth: int) -> None:
        if depth > 256:
            raise ValueError("output tree is nested too deeply")
        for f in directory.files:
            check_name(f.name)
            files.append([_join(rel, f.name), f.digest.hash, f.digest.size_bytes, bool(f.is_executable)])
        for s in directory.symlinks:
            check_name(s.name)
            links.append([_join(rel, s.name), s.target])
        for sub in directory.directories:
            check_name(sub.name)
            child = by_digest.get(sub.digest.hash)
            if child is None:
                raise ValueError(f"output tree lacks directory {_join(rel, sub.name)}")
            dirs.append(_join(rel, sub.name))
            walk(child, _join(rel, sub.name), depth + 1)

    walk(tree.root, "", 0)
    return {"dirs": sorted(dirs), "files": sorted(files), "links": sorted(links)}


def output_tree(path: Path, put_file: Callable[[Path], Digest]) -> tuple[Any, list[Digest]]:
    """Directory *path* as a REAPI ``Tree`` (what a worker reports for an
    output directory), each file stored by *put_file*; and the file digests."""
    from hermetic._protos import remote_cache_pb2 as pb

    files: list[Digest] = []
    children: dict[Digest, bytes] = {}

    def directory(p: Path) -> Any:
        d = pb.Directory()
        for entry in sorted(os.scandir(p), key=lambda e: e.name):
            if entry.is_symlink():
                d.symlinks.add(name=entry.name, target=os.readlink(entry.path))
            elif entry.is_dir():
                sd, data = serialize(directory(Path(entry.path)))
                children[sd] = data
                d.directories.add(name=entry.name, digest=pb.Digest(hash=sd.hash, size_bytes=sd.size))
            elif entry.is_file():
                x = os.access(entry.path, os.X_OK)
                fd = put_file(Path(entry.path))
                files.append(fd)
                d.files.add(name=entry.name, digest=pb.Digest(hash=fd.hash, size_bytes=fd.size), is_executable=x)
            else:
                raise ValueError(f"{entry.path}: not a regular file, directory or symlink")
        return d

    tree = pb.Tree()
    tree.root.CopyFrom(directory(path))
    for _, data in sorted(children.items()):
        tree.children.add().ParseFromString(data)
    return tree, files


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def check_name(name: str) -> None:
    """A Directory entry's name: one path component, never . or .."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad name in a directory tree: {name!r}")
