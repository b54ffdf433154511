"""hermetic's built-in rules and the pinned data they need. Each submodule is
a pluggy plugin registered through the ``hermetic`` entry-point group, exactly
like a third-party rule set."""
