"""Start a Python entry point as a child process that never outlives its parent.

Used by the launcher for its nodes and emulated devices: each runs in a session of its
own (so a Ctrl-C in the terminal reaches only the launcher, which stops them in order),
and, on Linux, gets a SIGINT when the process that started it dies without stopping it,
so nothing runs on headless after a killed launcher; SIGINT lets a driver bring the arm
to rest. A SIGINT that arrives while the child is still importing (a Ctrl-C right after
start) ends it quietly: nothing was opened yet, and a traceback would only alarm the user.
"""

from __future__ import annotations

import os
import sys

__all__ = ["entry_point_command"]

_BOOTSTRAP = """\
import sys, importlib, functools
try:
    import ctypes, os
    ctypes.CDLL(None).prctl(1, 2)  # PR_SET_PDEATHSIG, SIGINT
    if os.getppid() != {parent_pid}:
        sys.exit(1)  # the parent died before prctl took effect
except (OSError, AttributeError):
    pass  # no prctl on this platform
except KeyboardInterrupt:
    sys.exit(130)
sys.argv[0] = {name!r}
try:
    entry = functools.reduce(getattr, {attr!r}.split('.'), importlib.import_module({module!r}))
except KeyboardInterrupt:
    sys.exit(130)
sys.exit(entry())
"""


def entry_point_command(module: str, attr: str, name: str, args: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Return the argv that runs ``module:attr()`` with this interpreter, as program ``name``.

    The entry point sees ``sys.argv == [name, *args]`` plus whatever the caller appends to
    the returned list. The parent whose death sends the child a SIGINT is this process.
    """
    code = _BOOTSTRAP.format(parent_pid=os.getpid(), name=name, module=module, attr=attr)
    return [sys.executable, "-c", code, *args]
