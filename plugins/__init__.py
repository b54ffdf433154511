"""Per-platform plugins: host platform, toolchains and sandboxes."""
