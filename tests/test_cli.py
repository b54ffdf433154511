"""The command line: exit codes and what the user reads."""

from hermetic import cli
from hermetic.testing import write_workspace


def test_unknown_target_is_a_clear_error(tmp_path, capsys, monkeypatch):
    write_workspace(tmp_path, {"BUILD.toml": '[workspace]\n[lib]\nrule = "filegroup"\nsrcs = ["a.txt"]\n',
                               "a.txt": "x"})
    code = cli.main(["-C", str(tmp_path), "--cache-dir", str(tmp_path / "c"), "build", "//:lbi"])
    err = capsys.readouterr().err
    assert code == cli.ExitCode.BAD_INPUT
    assert 'error[unknown-target]: no target "//:lbi"' in err and 'hint: did you mean "//:lib"?' in err


def test_build_file_error_names_file_and_line(tmp_path, capsys):
    write_workspace(tmp_path, {"BUILD.toml": '[workspace]\n[lib]\nrule = "filegroup"\nsrcz = ["a"]\n'})
    code = cli.main(["-C", str(tmp_path), "query", "deps", "//:lib"])
    err = capsys.readouterr().err
    assert code == cli.ExitCode.BAD_INPUT
    assert "error[unknown-attribute]: BUILD.toml:4: target //:lib: rule \"filegroup\" has no attribute \"srcz\"" in err
    assert 'hint: did you mean "srcs"?' in err


def test_query_rdeps(tmp_path, capsys):
    write_workspace(tmp_path, {"BUILD.toml": """
        [workspace]
        [a]
        rule = "filegroup"
        srcs = ["f"]
        [b]
        rule = "filegroup"
        srcs = [":a"]
        [c]
        rule = "filegroup"
        srcs = [":b"]
    """, "f": "x"})
    assert cli.main(["-C", str(tmp_path), "query", "rdeps", "//:a"]) == 0
    assert capsys.readouterr().out.split() == ["//:b", "//:c"]
    assert cli.main(["-C", str(tmp_path), "query", "deps", "//:c"]) == 0
    assert capsys.readouterr().out.split() == ["//:a", "//:b"]


def test_no_workspace(tmp_path, capsys):
    assert cli.main(["-C", str(tmp_path), "query", "targets"]) == cli.ExitCode.ENVIRONMENT
    assert "no workspace found" in capsys.readouterr().err
