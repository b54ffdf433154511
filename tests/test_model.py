import pytest

from hermetic.errors import LabelError
from hermetic.model import Label, Platform
from hermetic.rules import DepSet


@pytest.mark.parametrize("text,base,want", [
    pytest.param("//wheel:linux-x86_64", None, Label("wheel", "linux-x86_64"), id="full"),
    pytest.param("//a/b", None, Label("a/b", "b"), id="implicit-name"),
    pytest.param(":x", "pkg", Label("pkg", "x"), id="relative"),
    pytest.param("//:root", None, Label("", "root"), id="root-package"),
])
def test_label_parse(text, base, want):
    assert Label.parse(text, base) == want


@pytest.mark.parametrize("text", [
    pytest.param("wheel:x", id="no-slashes"),
    pytest.param("//a:", id="empty-name"),
    pytest.param("//a b:c", id="space"),
    pytest.param("//a:b/../c", id="dots"),
])
def test_label_rejects(text):
    with pytest.raises(LabelError) as e:
        Label.parse(text)
    assert e.value.reason == "bad-label"


def test_label_roundtrip():
    assert str(Label.parse("//recipes/openssl:source")) == "//recipes/openssl:source"


def test_platform_parse():
    assert Platform.parse("linux-x86_64") == Platform("linux", "x86_64", "glibc")
    assert str(Platform.parse("linux-aarch64-musl")) == "linux-aarch64-musl"


def test_depset_order_and_dedup():
    a = DepSet([1, 2])
    b = DepSet([3, 2], transitive=[a])
    c = DepSet([0], transitive=[b, a])
    assert c.to_list() == [0, 3, 2, 1]


def test_where_a_toolchain_package_lives_is_in_no_key():
    from hermetic.model import Toolchain

    def tc(root: str) -> Toolchain:
        return Toolchain("cc", {"cc": "ziglang/zig"}, {"ziglang": "0.17.1", "sha256:wheel": "ab" * 32},
                         root=root, wrappers={"cc": '#!/bin/sh\nexec "$HERMETIC_TOOLCHAIN_CC/ziglang/zig" cc "$@"\n'})

    assert tc("/home/alice/.cache/hermetic/toolchains/z").fingerprint == tc("/srv/ci/cache/toolchains/z").fingerprint
    assert tc("/a").root_env == "HERMETIC_TOOLCHAIN_CC"


@pytest.mark.parametrize(("text", "why"), [
    pytest.param("linux", "is not a platform", id="no-arch"),
    pytest.param("linux-x86_64-foo", 'unknown libc "foo"', id="libc"),
    pytest.param("musllinux-x86_64-musl", "names its libc twice", id="twice"),
    pytest.param("darwin-arm64-musl", "has no libc variants", id="darwin-libc"),
])
def test_a_bad_platform_is_reported_as_a_platform(text, why):
    from hermetic.errors import PlatformError
    from hermetic.model import Platform

    with pytest.raises(PlatformError) as e:
        Platform.parse(text)
    assert e.value.reason == "bad-platform" and why in str(e.value)


def test_the_classes_an_analysis_holds_by_the_hundred_thousand_pickle_as_tuples():
    """Label, Artifact, Action and DefaultInfo pickle as a tuple of their
    fields (restored by one unrolled function, not attrs' dict and loop: the
    pickled analysis of 100,000 actions loads in about half the time), and
    come back equal, with Action's id and still frozen."""
    import pickle

    import attrs

    from hermetic.model import Action, Artifact, Label
    from hermetic.rules import DefaultInfo

    owner = Label("a/b", "c")
    src = Artifact("out/a/b/c/x", owner=owner)
    action = Action("run", owner, "Gen", inputs=[src], outputs=[Artifact("out/y", True)],
                    params={"argv": ["sh"], "env": {}}, cpus=2, config="linux-arm64")
    for obj in (owner, src, action, DefaultInfo(files=(src,))):
        state = obj.__getstate__()
        assert type(state) is tuple and len(state) == len(attrs.fields(type(obj)))
        back = pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == obj and type(back) is type(obj)
    back = pickle.loads(pickle.dumps(action))
    assert back.id == "//a/b:c#Gen@linux-arm64" and back.inputs[0].owner == owner
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        back.cpus = 3  # type: ignore[misc]
