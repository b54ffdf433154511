"""The HermeticError tree: every error a user is meant to read, and the
closed set of reasons they carry (each with what to do about it)."""

from __future__ import annotations

import enum
from typing import ClassVar

import attrs


class Exit(enum.Enum):
    """What kind of failure a reason is: decides the command's exit code."""

    INPUT = "input"  # BUILD files, labels, pins, queries, archives: fix the input
    ENVIRONMENT = "environment"  # no sandbox, no toolchain, no workspace: fix the machine
    USAGE = "usage"  # the command line
    BUILD = "build"  # an action failed


class Reason(enum.StrEnum):
    """Why an error happened: a stable code for tests and tools (``error[code]``).

    Every member has an entry in :data:`REASONS` with its kind and the hint
    shown when the raise site has nothing more specific to say."""

    # the command line
    USAGE = "usage"
    UNKNOWN_TARGET = "unknown-target"
    BAD_QUERY = "bad-query"
    # BUILD files and labels
    BUILD_FILE = "build-file"
    TOML_SYNTAX = "toml-syntax"
    NOT_A_TABLE = "not-a-table"
    MISSING_RULE = "missing-rule"
    UNKNOWN_RULE = "unknown-rule"
    DUPLICATE_RULE = "duplicate-rule"
    DUPLICATE_TARGET = "duplicate-target"
    UNKNOWN_ATTRIBUTE = "unknown-attribute"
    MISSING_ATTRIBUTE = "missing-attribute"
    BAD_ATTRIBUTE_TYPE = "bad-attribute-type"
    BAD_VALUE = "bad-value"
    BAD_LABEL = "bad-label"
    BAD_PLATFORM = "bad-platform"
    BAD_PATH = "bad-path"
    MISSING_FILE = "missing-file"
    MISSING_DEPENDENCY = "missing-dependency"
    MISSING_PROVIDER = "missing-provider"
    CYCLE = "cycle"
    ANALYSIS = "analysis"
    NO_WORKSPACE = "no-workspace"
    # the machine
    NO_HOST_PLATFORM = "no-host-platform"
    NO_SANDBOX = "no-sandbox"
    SANDBOX = "sandbox"
    TOOLCHAIN = "toolchain"
    NO_TOOLCHAIN = "no-toolchain"
    NO_GPGV = "no-gpgv"
    GRAPHVIZ = "graphviz"
    # fetching and archives
    FETCH_FAILED = "fetch-failed"
    HASH_MISMATCH = "hash-mismatch"
    UNRESOLVABLE = "unresolvable"
    UNTRUSTED_PROVENANCE = "untrusted-provenance"
    BAD_SIGNATURE = "bad-signature"
    NO_VERIFIER = "no-verifier"
    BAD_ARCHIVE = "bad-archive"
    BAD_PREFIX = "bad-prefix"
    PATH_ESCAPE = "path-escape"
    LINK_ESCAPE = "link-escape"
    SPECIAL_FILE = "special-file"
    BOMB = "bomb"
    # executing
    ACTION_FAILED = "action-failed"
    MISSING_OUTPUT = "missing-output"
    BAD_OUTPUT = "bad-output"
    DANGLING_INPUT = "dangling-input"
    MISSING_SOURCE = "missing-source"
    SOURCE_CHANGED = "source-changed"
    DISK_FULL = "disk-full"
    BUILD_FAILED = "build-failed"
    # the store and remotes
    CACHE = "cache"
    CACHE_IO = "cache-io"
    CORRUPT_BLOB = "corrupt-blob"
    MISSING_BLOB = "missing-blob"
    REMOTE = "remote"
    REMOTE_MISMATCH = "remote-mismatch"


_FIX_BUILD_FILE = "fix the BUILD.toml at the line shown"
_PLATFORMS = "name a platform like linux-x86_64, linux-aarch64-manylinux2014, musllinux-x86_64, macos-arm64"
_HOSTILE = "the pinned archive is hostile ({}); nothing of it was kept: check the pin and where it came from"

#: each reason's kind and its hint for raise sites with nothing more specific to say
REASONS: dict[Reason, tuple[Exit, str]] = {
    Reason.USAGE: (Exit.USAGE, "see `hermetic COMMAND --help`"),
    Reason.UNKNOWN_TARGET: (Exit.INPUT, "`hermetic query //...` lists every target"),
    Reason.BAD_QUERY: (Exit.INPUT, "see `hermetic query --help` for the query language"),
    Reason.BUILD_FILE: (Exit.INPUT, _FIX_BUILD_FILE),
    Reason.TOML_SYNTAX: (Exit.INPUT, "fix the TOML syntax at the line shown"),
    Reason.NOT_A_TABLE: (Exit.INPUT, 'a target is a TOML table: [name] with rule = "..." and its attributes'),
    Reason.MISSING_RULE: (Exit.INPUT, 'add rule = "..." to the target '
                                      "(`hermetic query --output label_kind //...` shows examples)"),
    Reason.UNKNOWN_RULE: (Exit.INPUT, "use a rule a plugin registers, or install the plugin that provides it"),
    Reason.DUPLICATE_RULE: (Exit.INPUT, "two plugins register a rule of the same name: disable one "
                                        "(HERMETIC_DISABLE_PLUGINS)"),
    Reason.DUPLICATE_TARGET: (Exit.INPUT, "rename or remove one of the two targets"),
    Reason.UNKNOWN_ATTRIBUTE: (Exit.INPUT, "remove the attribute or fix its name"),
    Reason.MISSING_ATTRIBUTE: (Exit.INPUT, "add the attribute to the target"),
    Reason.BAD_ATTRIBUTE_TYPE: (Exit.INPUT, "give the attribute a value of the type shown"),
    Reason.BAD_VALUE: (Exit.INPUT, "fix the value at the line shown"),
    Reason.BAD_LABEL: (Exit.INPUT, "labels look like //package:name, :name in the current package, or //package"),
    Reason.BAD_PLATFORM: (Exit.INPUT, _PLATFORMS),
    Reason.BAD_PATH: (Exit.INPUT, "name files inside the target's package directory"),
    Reason.MISSING_FILE: (Exit.INPUT, "create the file, fix the pattern, or remove it from the list"),
    Reason.MISSING_DEPENDENCY: (Exit.INPUT, "fix the label, or declare the target it names"),
    Reason.MISSING_PROVIDER: (Exit.INPUT, "depend on a target of a rule that provides what the attribute needs"),
    Reason.CYCLE: (Exit.INPUT, "break the cycle between the targets shown"),
    Reason.ANALYSIS: (Exit.INPUT, "fix the target's attributes at the line shown"),
    Reason.NO_WORKSPACE: (Exit.ENVIRONMENT, "run inside a workspace (a directory whose BUILD.toml has a "
                                            "[workspace] table), or pass -C DIR"),
    Reason.NO_HOST_PLATFORM: (Exit.ENVIRONMENT, "install hermetic's platform plugins (pip install -e .)"),
    Reason.NO_SANDBOX: (Exit.ENVIRONMENT, "install bubblewrap (apt-get install bubblewrap), or pass "
                                          "--sandbox=none to run actions unisolated (keyed apart, not hermetic)"),
    Reason.SANDBOX: (Exit.ENVIRONMENT, "check that bubblewrap can create namespaces here (`bwrap --ro-bind / / "
                                       "true`), or pass --sandbox=none"),
    Reason.TOOLCHAIN: (Exit.ENVIRONMENT, "install the tool named above (scripts/setup.sh installs everything)"),
    Reason.NO_TOOLCHAIN: (Exit.ENVIRONMENT, "install the tool named above (scripts/setup.sh installs everything)"),
    Reason.NO_GPGV: (Exit.ENVIRONMENT, "apt-get install gpgv (scripts/setup.sh does)"),
    Reason.GRAPHVIZ: (Exit.ENVIRONMENT, "apt-get install graphviz, or use --format dot"),
    Reason.FETCH_FAILED: (Exit.INPUT, "put the file in a --distdir directory, or check the recipe's URLs "
                                      "and mirrors"),
    Reason.UNTRUSTED_PROVENANCE: (Exit.INPUT, "the wheel's provenance is unsigned, signed by no trusted key, or "
                                              "does not describe this wheel built from this workspace's pins"),
    Reason.UNRESOLVABLE: (Exit.INPUT, "pip's resolver found no set of binary wheels that meets every "
                                      "requirement on every Python and platform asked for: relax a specifier or "
                                      "drop a platform"),
    Reason.HASH_MISMATCH: (Exit.INPUT, "a source served other bytes than the pin: if the pin is right, the "
                                       "source is wrong (remove it); a new release needs a new pin"),
    Reason.BAD_SIGNATURE: (Exit.INPUT, "the bytes do not carry upstream's signature by the pinned key: do not "
                                       "use them; check where they came from"),
    Reason.NO_VERIFIER: (Exit.ENVIRONMENT, "install the plugin that checks this kind of signature, or fix the "
                                           "signature's kind"),
    Reason.BAD_ARCHIVE: (Exit.INPUT, "the pinned file is not a readable tar or zip archive; check the recipe's "
                                     "file name and sha256"),
    Reason.BAD_PREFIX: (Exit.INPUT, "fix strip_prefix: it must be the archive's top directory"),
    Reason.PATH_ESCAPE: (Exit.INPUT, _HOSTILE.format("an entry escapes its directory")),
    Reason.LINK_ESCAPE: (Exit.INPUT, _HOSTILE.format("a link points outside its tree")),
    Reason.SPECIAL_FILE: (Exit.INPUT, _HOSTILE.format("it holds a device or fifo")),
    Reason.BOMB: (Exit.INPUT, "the pinned archive expands beyond the limits; if it is genuine, raise the limit "
                              "in the recipe"),
    Reason.ACTION_FAILED: (Exit.BUILD, "see the command and its output above; `hermetic why TARGET` says what "
                                       "changed"),
    Reason.MISSING_OUTPUT: (Exit.BUILD, "the rule declares an output its command does not write"),
    Reason.BAD_OUTPUT: (Exit.BUILD, "an action may only produce regular files, directories and relative links"),
    Reason.DANGLING_INPUT: (Exit.BUILD, "a rule used a file that is neither a source nor declared by an action: "
                                        "fix the rule"),
    Reason.MISSING_SOURCE: (Exit.INPUT, "it was listed when the BUILD file was loaded; was it deleted?"),
    Reason.SOURCE_CHANGED: (Exit.BUILD, "a source file changed while it was being built: build again"),
    Reason.DISK_FULL: (Exit.ENVIRONMENT, "free disk space, or run `hermetic cache gc --max-size SIZE`"),
    Reason.BUILD_FAILED: (Exit.BUILD, "fix the first failure above"),
    Reason.CACHE: (Exit.ENVIRONMENT, "run `hermetic cache gc --max-size SIZE` or remove the damaged store with "
                                     "`hermetic clean --expunge`"),
    Reason.CACHE_IO: (Exit.ENVIRONMENT, "check the cache directory's permissions and free space (--cache-dir, "
                                        "$HERMETIC_CACHE_DIR)"),
    Reason.CORRUPT_BLOB: (Exit.BUILD, "build again: the damaged entry was removed and is rebuilt or fetched"),
    Reason.MISSING_BLOB: (Exit.BUILD, "build again: the missing entry is rebuilt or fetched"),
    Reason.REMOTE: (Exit.INPUT, "check the [remote] settings or pass --remote-cache with a http(s):// or "
                                "grpc(s):// URL"),
    Reason.REMOTE_MISMATCH: (Exit.BUILD, "the remote holds an unreproducible or tampered result; "
                                         "`hermetic verify --against-cache` shows which"),
}


def _reason(value: str | Reason | None) -> Reason | None:
    """Only members of the closed set: an unknown code is a bug at the raise site."""
    return None if value is None else Reason(value)


@attrs.frozen(auto_exc=True, eq=False)
class HermeticError(Exception):
    """Root of every error hermetic reports to a user.

    Subclasses carry data and build their message in ``__str__``; ``reason`` is
    a stable slug for tests and tools, ``hint`` says what to do.
    """

    #: the reason an error of this class has unless its raise site names another
    DEFAULT_REASON: ClassVar[Reason] = Reason.ANALYSIS

    message: str
    hint: str | None = None
    reason: Reason = attrs.field(default=None, converter=_reason)

    def __attrs_post_init__(self) -> None:
        if self.reason is None:
            object.__setattr__(self, "reason", self.DEFAULT_REASON)
        if self.hint is None:  # the reason's own advice
            object.__setattr__(self, "hint", REASONS[self.reason][1])

    def __str__(self) -> str:
        return self.message

    @property
    def kind(self) -> Exit:
        return REASONS[self.reason][0]


@attrs.frozen
class Location:
    """Where in a BUILD file something was written."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def located(where: Location | None, message: str) -> str:
    return f"{where}: {message}" if where else message


@attrs.frozen(auto_exc=True, eq=False)
class BuildFileError(HermeticError):
    """A BUILD.toml problem, with file and line."""

    DEFAULT_REASON = Reason.BUILD_FILE

    where: Location | None = None

    def __str__(self) -> str:
        return located(self.where, self.message)


class LabelError(HermeticError):
    """A label that does not parse."""

    DEFAULT_REASON = Reason.BAD_LABEL


class PlatformError(HermeticError):
    """A platform name that does not parse (``--platform``, a ``platform`` attribute)."""

    DEFAULT_REASON = Reason.BAD_PLATFORM


class CycleError(HermeticError):
    """A dependency cycle between targets or actions."""

    DEFAULT_REASON = Reason.CYCLE


@attrs.frozen(auto_exc=True, eq=False)
class AnalysisError(HermeticError):
    """A rule rejected its target's attributes or dependencies."""

    DEFAULT_REASON = Reason.ANALYSIS

    where: Location | None = None

    def __str__(self) -> str:
        return located(self.where, self.message)


class ToolchainError(HermeticError):
    """A toolchain that is missing or that its plugin filled in wrongly."""

    DEFAULT_REASON = Reason.TOOLCHAIN


class SandboxError(HermeticError):
    """No sandbox, or one that cannot isolate actions here."""

    DEFAULT_REASON = Reason.SANDBOX


class FetchError(HermeticError):
    """A pinned download could not be obtained or did not verify."""

    DEFAULT_REASON = Reason.FETCH_FAILED


class ArchiveError(HermeticError):
    """An archive is malformed or tries to write outside its directory."""

    DEFAULT_REASON = Reason.BAD_ARCHIVE


class CacheError(HermeticError):
    """The store (or a remote) holds something damaged or cannot be written."""

    DEFAULT_REASON = Reason.CACHE


@attrs.frozen(auto_exc=True, eq=False)
class ActionFailed(HermeticError):
    """An action's command exited non-zero or did not produce its outputs."""

    DEFAULT_REASON = Reason.ACTION_FAILED

    action: str = ""
    command: str = ""
    exit_code: int | None = None
    output_tail: str = ""
    #: "sha256:size" of its whole output in the store ("" when none was kept), for `hermetic log`
    log: str = ""

    def __str__(self) -> str:
        lines = [f"action {self.action} failed: {self.message}"]
        if self.command:
            lines.append(f"  command: {self.command}")
        if self.output_tail:
            lines.append("  output (last lines):")
            lines.extend("    " + line for line in self.output_tail.splitlines())
        return "\n".join(lines)


@attrs.frozen(auto_exc=True, eq=False)
class BuildFailed(HermeticError):
    """One or more actions failed (with --keep-going, all of them)."""

    DEFAULT_REASON = Reason.BUILD_FAILED

    failures: tuple[HermeticError, ...] = ()

    def __str__(self) -> str:
        return "\n".join([self.message, *(str(f) for f in self.failures)])


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """Return a hint naming the closest choice, or None."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else None


class RemoteError(HermeticError):
    """Misconfiguration of a remote cache (a remote that fails at run time
    never fails the build: hermetic falls back to local execution)."""

    DEFAULT_REASON = Reason.REMOTE
