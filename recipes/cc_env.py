"""The environment a ``./configure``/``./Configure`` + make build of a C
library gets: the cc toolchain's wrappers by bare name, make (and perl)
from the host, and the source release's own timestamp."""

from __future__ import annotations

from hermetic.model import Toolchain
from hermetic.providers import SourceInfo


def make_env(cc: Toolchain, make: Toolchain, source: SourceInfo, *, perl: bool = False) -> dict[str, str]:
    """CC, AR, RANLIB (the compiler's wrappers: bare names, so no path is
    recorded in what the build writes), MAKE (and PERL), and
    SOURCE_DATE_EPOCH when the source pins its release date."""
    env = {"CC": cc.tool("cc"), "AR": cc.tool("ar"), "RANLIB": cc.tool("ranlib"), "MAKE": make.tool("make")}
    if perl:
        env["PERL"] = make.tool("perl")
    if source.source_date_epoch:
        env["SOURCE_DATE_EPOCH"] = str(source.source_date_epoch)  # "built on:" = the release date
    return env
