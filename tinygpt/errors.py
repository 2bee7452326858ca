"""User mistakes get one clear line and a non-zero exit, never a stack trace."""

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any


class UserError(Exception):
    """A problem with the user's input (config, data, checkpoint, prompt) that they can fix."""


def find_user_error(exc: BaseException) -> UserError | None:
    """Return the UserError behind ``exc`` (Hydra wraps errors raised during instantiate)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


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
