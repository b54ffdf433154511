"""Loading: every BUILD.toml problem names its file and line."""

import pytest

from hermetic._analysis import load
from hermetic._buildfile import Workspace
from hermetic.errors import HermeticError
from hermetic.model import Label
from hermetic.rules import RuleRegistry, attr
from hermetic.testing import write_workspace


@pytest.fixture
def registry():
    r = RuleRegistry()
    r.rule("lib", attrs={"deps": attr.label_list(), "srcs": attr.files(), "opt": attr.string(),
                         "need": attr.string(mandatory=False)})(lambda ctx: [])
    return r


def _errors(tmp_path, registry, files, root="//p:a"):
    write_workspace(tmp_path, {"BUILD.toml": "[workspace]\n", **files})
    ws = Workspace(tmp_path)
    with pytest.raises((ExceptionGroup, HermeticError)) as info:
        load(ws, registry, [Label.parse(root)])
    if isinstance(info.value, ExceptionGroup):
        return list(info.value.exceptions)
    return [info.value]


@pytest.mark.parametrize("body,reason,where,hint", [
    pytest.param('[a]\nrule = "lbi"\n', "unknown-rule", "p/BUILD.toml:2", 'did you mean "lib"?', id="unknown-rule"),
    pytest.param('[a]\nrule = "lib"\n\nopts = "x"\n', "unknown-attribute", "p/BUILD.toml:4",
                 'did you mean "opt"?', id="unknown-attribute"),
    pytest.param('[a]\nrule = "lib"\ndeps = [":b"]\n\n[bb]\nrule = "lib"\n', "missing-dependency",
                 "p/BUILD.toml:3", 'did you mean "//p:bb"?', id="missing-dep"),
    pytest.param('[a]\nrule = "lib"\nopt = 3\n', "bad-attribute-type", "p/BUILD.toml:3", None, id="bad-type"),
    pytest.param('[a]\nrule = "lib"\nsrcs = ["nope.c"]\n', "missing-file", "p/BUILD.toml:3", None,
                 id="missing-file"),
    pytest.param('[a]\nrule = "lib"\nsrcs = ["../x.c"]\n', "bad-path", "p/BUILD.toml:3", None, id="escaping-file"),
    pytest.param('[a]\nrule = "lib"\nopt = \n', "toml-syntax", "p/BUILD.toml:3", None, id="toml-syntax"),
    pytest.param('[a]\nopt = "x"\n', "missing-rule", "p/BUILD.toml:1", None, id="missing-rule"),
])
def test_build_file_errors(tmp_path, registry, body, reason, where, hint):
    (err,) = _errors(tmp_path, registry, {"p/BUILD.toml": body})
    assert err.reason == reason
    assert str(err).startswith(where + ":"), str(err)
    if hint:
        assert err.hint == hint


def test_all_problems_reported_at_once(tmp_path, registry):
    errs = _errors(tmp_path, registry, {"p/BUILD.toml": '[a]\nrule = "lib"\nbad1 = 1\nbad2 = 2\ndeps = ["//q:z"]\n'})
    assert sorted(e.reason for e in errs) == ["missing-dependency", "unknown-attribute", "unknown-attribute"]


def test_cycle_names_its_path(tmp_path, registry):
    (err,) = _errors(tmp_path, registry, {
        "p/BUILD.toml": '[a]\nrule = "lib"\ndeps = ["//q:b"]\n',
        "q/BUILD.toml": '[b]\nrule = "lib"\ndeps = ["//p:a"]\n',
    })
    assert err.reason == "cycle"
    assert "//p:a -> //q:b -> //p:a" in str(err) or "//q:b -> //p:a -> //q:b" in str(err)
    assert "p/BUILD.toml:1" in err.hint


def test_root_file_may_hold_other_packages(tmp_path, registry):
    write_workspace(tmp_path, {"BUILD.toml": '[workspace]\n\n["//w:x"]\nrule = "lib"\ndeps = ["//p:a"]\n',
                               "p/BUILD.toml": '[a]\nrule = "lib"\n'})
    loaded = load(Workspace(tmp_path), registry, [Label.parse("//w:x")])
    assert loaded.deps[Label("w", "x")] == [Label("p", "a")]


def test_unknown_target_on_command_line(tmp_path, registry):
    (err,) = _errors(tmp_path, registry, {"p/BUILD.toml": '[abc]\nrule = "lib"\n'}, root="//p:abd")
    assert err.reason == "unknown-target"
    assert err.hint == 'did you mean "//p:abc"?'


def _git(ws, *args, **env):
    import os
    import subprocess

    subprocess.run(["git", "-C", str(ws), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid", **env})


def test_source_date_epoch_from_the_last_commit_never_the_clock(tmp_path):
    write_workspace(tmp_path, {"BUILD.toml": '[workspace]\nsource_date_epoch = "git"\n'})
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "BUILD.toml")
    _git(tmp_path, "commit", "-q", "-m", "one", GIT_COMMITTER_DATE="@1700000000 +0000")
    ws = Workspace(tmp_path)
    ws.load_all()
    assert ws.config.source_date_epoch == 1700000000


def test_source_date_epoch_git_without_history_names_the_line(tmp_path):
    write_workspace(tmp_path, {"BUILD.toml": '[workspace]\n\nsource_date_epoch = "git"\n'})
    with pytest.raises((ExceptionGroup, HermeticError)) as info:
        Workspace(tmp_path).load_all()
    errs = list(info.value.exceptions) if isinstance(info.value, ExceptionGroup) else [info.value]
    assert len(errs) == 1
    assert "BUILD.toml:3" in str(errs[0].where) and "no commit" in str(errs[0])
    assert "pin an integer" in errs[0].hint


@pytest.mark.parametrize("value", ['"yesterday"', "-5", "true", "1.5"])
def test_source_date_epoch_must_be_a_time(tmp_path, value):
    write_workspace(tmp_path, {"BUILD.toml": f"[workspace]\nsource_date_epoch = {value}\n"})
    with pytest.raises((ExceptionGroup, HermeticError)) as info:
        Workspace(tmp_path).load_all()
    errs = list(info.value.exceptions) if isinstance(info.value, ExceptionGroup) else [info.value]
    assert "source_date_epoch must be a Unix time" in str(errs[0])
