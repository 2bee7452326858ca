"""User mistakes get one clear line and a non-zero exit, never a stack trace."""

import errno
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any


class UserError(Exception):
    """A problem with the user's input (config, data, checkpoint, prompt) that they can fix."""


# Faults of the machine rather than of the code: reported in one line like a user's mistake.
MACHINE_FAULTS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space within your quota",
    errno.EROFS: "use a folder on a writable filesystem",
}


def find_user_error(exc: BaseException) -> UserError | None:
    """Return the UserError behind ``exc`` (Hydra wraps errors raised during instantiate), or one made
    from a full disk or a read-only filesystem anywhere in the chain."""
    seen = set()
    fault = None
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        if fault is None and isinstance(exc, OSError) and exc.errno in MACHINE_FAULTS:
            where = f"cannot write {exc.filename}" if exc.filename else "cannot write a file"
            fault = UserError(f"{where}: {exc.strerror}; {MACHINE_FAULTS[exc.errno]}, then run again")
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return fault


def exit_on_user_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError raised by ``fn`` into ``error: <message>`` on stderr and exit status 2.

    Set HYDRA_FULL_ERROR=1 to get the full traceback instead.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = find_user_error(exc)
            if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
