"""An outside plugin, installed as a distribution with an entry point in the
``hermetic`` group, adds a rule exactly as the built-ins do."""

import textwrap

from hermetic._plugins import Hooks, make_plugin_manager
from hermetic.rules import RuleRegistry


def test_entry_point_plugin_adds_a_rule(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "outside_rules-1.0.dist-info").mkdir(parents=True)
    (site / "outside_rules-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-rules\n"
                                                                   "Version: 1.0\n")
    (site / "outside_rules-1.0.dist-info" / "entry_points.txt").write_text("[hermetic]\noutside = outside_rules\n")
    (site / "outside_rules.py").write_text(textwrap.dedent("""
        from hermetic.hookspecs import hookimpl
        from hermetic.rules import DefaultInfo

        @hookimpl
        def hermetic_register_rules(registry):
            registry.rule("outside_rule", attrs={})(lambda ctx: [DefaultInfo(())])
    """))
    monkeypatch.syspath_prepend(str(site))
    pm = make_plugin_manager()
    registry = RuleRegistry()
    Hooks(pm).register_rules(registry)
    names = registry.names()
    assert "outside_rule" in names
    # the built-ins arrive through the very same group
    assert {"archive", "openssl", "cffi_extension", "py_wheel"} <= set(names)
    assert {n for n, _ in pm.list_name_plugin()} >= {"outside", "fetch", "openssl", "linux"}


def test_plugins_can_be_disabled(monkeypatch):
    monkeypatch.setenv("HERMETIC_DISABLE_PLUGINS", "wheel")
    registry = RuleRegistry()
    Hooks(make_plugin_manager()).register_rules(registry)
    assert "py_wheel" not in registry.names() and "openssl" in registry.names()
