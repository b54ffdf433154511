"""What the remote-execution client and worker agree on with any REAPI
implementation, without a server: output trees with one digest whether
made remotely or here, input roots as canonical Merkle trees, commands that
run in any working directory, platform properties, configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hermetic import _reapi
from hermetic._cache import Store
from hermetic._protos import remote_cache_pb2 as pb
from hermetic._remote import resolve
from hermetic.errors import RemoteError
from hermetic.model import Digest, Toolchain, canonical_json
from hermetic.testing import write_workspace


def _sample_tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "top.txt").write_text("top\n")
    (root / "a" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "a" / "tool").chmod(0o755)
    (root / "a" / "b" / "deep.h").write_text("#define DEEP 1\n")
    (root / "a" / "b" / "same.h").write_text("top\n")  # same bytes as top.txt: one blob
    os.symlink("b/deep.h", root / "a" / "link.h")
    return root


def test_a_remote_output_tree_has_the_local_tree_digest(tmp_path):
    """A worker reports an output directory as a REAPI Tree; the client
    turns it into the store's manifest. Both ways must give the manifest
    Store.put_tree makes, or remote and local results would not be one cache."""
    store = Store(tmp_path / "store")
    local = store.put_tree(_sample_tree(tmp_path / "one"), move=False)
    tree, files = _reapi.output_tree(_sample_tree(tmp_path / "two"), lambda p: store.put_file(p))
    remote = Digest.of_bytes(canonical_json(_reapi.tree_to_manifest(tree)))
    assert remote == local
    assert sorted(set(files)) == sorted(set(store.tree_blobs(local)))
    # and through the wire format
    again = pb.Tree.FromString(tree.SerializeToString())
    assert Digest.of_bytes(canonical_json(_reapi.tree_to_manifest(again))) == local


def test_a_tree_with_a_hostile_name_is_refused():
    tree = pb.Tree()
    tree.root.files.add(name="../escape", digest=pb.Digest(hash="0" * 64, size_bytes=1))
    with pytest.raises(ValueError, match="bad name"):
        _reapi.tree_to_manifest(tree)
    tree = pb.Tree()
    tree.root.directories.add(name="gone", digest=pb.Digest(hash="1" * 64, size_bytes=2))
    with pytest.raises(ValueError, match="lacks directory gone"):
        _reapi.tree_to_manifest(tree)


def test_input_root_is_canonical_whatever_the_order():
    d1, d2 = Digest.of_bytes(b"one"), Digest.of_bytes(b"two")
    a = _reapi.MerkleTree()
    a.add_file("in/x/one", d1)
    a.add_file("in/two", d2, True)
    a.add_dir("in/empty")
    b = _reapi.MerkleTree()
    b.add_dir("in/empty")
    b.add_file("in/two", d2, True)
    b.add_file("in/x/one", d1)
    ra, blobs, by_path = a.finish()
    assert ra == b.finish()[0]
    root = pb.Directory.FromString(blobs[ra])
    assert [n.name for n in root.directories] == ["in"]
    inner = pb.Directory.FromString(blobs[by_path["in"]])
    assert [n.name for n in inner.directories] == ["empty", "x"]
    assert [(f.name, f.is_executable) for f in inner.files] == [("two", True)]
    # a different executable bit is a different input root
    c = _reapi.MerkleTree()
    c.add_file("in/x/one", d1)
    c.add_file("in/two", d2, False)
    c.add_dir("in/empty")
    assert c.finish()[0] != ra


BUILD = """
[workspace]
source_date_epoch = 1767225600

["//:shout"]
rule = "genrule"
srcs = ["hello.txt"]
outs = ["loud.txt", "sub/quiet.txt"]
cmd = "tr a-z A-Z < $SRCS > $OUT/loud.txt; cd /; tr A-Z a-z < $SRCS > $OUT/sub/quiet.txt; echo $PWD $HOME > /dev/null"
"""


def test_the_command_runs_in_any_working_directory(tmp_path):
    """What any REAPI worker does with hermetic's Command: the input root in
    some directory, `arguments` run there with `environment_variables` and
    no sandbox. The outputs appear where `output_paths` say."""
    from hermetic._remote_exec import _PLACEHOLDER
    from hermetic._session import Session
    from hermetic.sandbox import base_environment

    ws = write_workspace(tmp_path / "ws", {"BUILD.toml": BUILD, "hello.txt": "Hello Remote\n"})
    s = Session(ws, cache_dir=tmp_path / "cache")
    analysis, _ = s.analyze(s.parse_labels(["//:shout"]))
    (action,) = [a for a in analysis.actions if a.kind == "run"]
    props = _reapi.platform_properties(action, "linux", {"name": "test"})
    cmd = _reapi.build_command(action, base_environment(_PLACEHOLDER, 1767225600), props)
    assert cmd.arguments[:2] == ["/bin/sh", "-c"]
    assert list(cmd.output_paths) == sorted(cmd.output_paths) == ["out/loud.txt", "out/sub/quiet.txt"]
    names = [e.name for e in cmd.environment_variables]
    assert names == sorted(names) and "SOURCE_DATE_EPOCH" in names and "IN" not in names
    for where in ("first", "elsewhere/deeper"):
        root = tmp_path / where
        for art in action.inputs:
            dest = root / "in" / art.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(analysis.sources[art.path].read_text())
        done = subprocess.run(list(cmd.arguments), cwd=root, capture_output=True, text=True,
                              env={e.name: e.value for e in cmd.environment_variables})
        assert done.returncode == 0, done.stderr
        assert (root / "out" / "loud.txt").read_text() == "HELLO REMOTE\n"
        assert (root / "out" / "sub" / "quiet.txt").read_text() == "hello remote\n"


def test_platform_properties_name_host_tools_not_traveling_ones():
    from hermetic.model import Action, Label, ToolchainPackage

    host_cc = Toolchain("cc", {"cc": "/usr/bin/gcc"}, {"version": "12"})
    make = Toolchain("make", {"make": "/usr/bin/make"}, {"version": "4.3"})
    packaged = Toolchain("cc", {"cc": "zig"}, {"sha256:wheel": "ab"},
                         package=ToolchainPackage("ziglang", "0.17.1", "z.whl", "ab" * 32))
    a = Action("run", Label("p", "t"), "Test", params={"argv": ["true"], "env": {}},
               toolchains=(host_cc, make, packaged))
    props = _reapi.platform_properties(a, "linux", {"name": "bwrap"}, machine="x86_64")
    names = [k for k, _ in props]
    assert props == sorted(props)
    assert ("OSFamily", "linux") in props and ("ISA", "x86-64") in props
    assert names.count("hermetic-sandbox") == 1
    assert sorted(v for k, v in props if k == "hermetic-toolchain") == sorted([host_cc.fingerprint,
                                                                               make.fingerprint])
    assert _reapi.isa("aarch64") == "arm-a64"
    assert set(_reapi.PROPERTY_KEYS) >= set(names)


def test_executor_settings(tmp_path):
    none = tmp_path / "none.toml"
    c = resolve({"executor": "grpc://exec:8980", "instance": "main"}, {}, "ws", env={}, user_file=none)
    assert c is not None and c.executor == "grpc://exec:8980" and c.url == "grpc://exec:8980"
    c = resolve({"executor": "grpc://exec:8980", "cache": "http://cache/c"}, {}, "ws", env={}, user_file=none)
    assert c is not None and c.url == "http://cache/c" and c.executor == "grpc://exec:8980"
    c = resolve({}, {"executor": "grpcs://team:443"}, "BUILD.toml", env={}, user_file=none)
    assert c is not None and c.executor == "grpcs://team:443"
    c = resolve({}, {}, "ws", env={"HERMETIC_REMOTE_EXECUTOR": "grpc://env:1"}, user_file=none)
    assert c is not None and c.executor == "grpc://env:1"
    with pytest.raises(RemoteError, match="not a grpc"):
        resolve({"executor": "http://exec:8080"}, {}, "ws", env={}, user_file=none)


def test_a_remote_action_takes_one_local_slot_whatever_its_cpus():
    """With a remote executor, OpenSSL's build (cpus = 64) must not hold every
    -j slot: six platforms' builds go to the cluster at once."""
    from hermetic._scheduler import Scheduler
    from hermetic.model import Action, Label

    big = Action("run", Label("p", "openssl"), "OpenSSLBuild", params={"argv": ["true"], "env": {}}, cpus=64)
    fetch = Action("fetch", Label("p", "src"), "Fetch", params={}, cpus=1)
    assert Scheduler(jobs=8).slots(big) == 8
    remote = Scheduler(jobs=8, remote_kinds=frozenset({"run"}))
    assert remote.slots(big) == 1 and remote.slots(fetch) == 1
