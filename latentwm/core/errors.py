"""One error type for every failure a user can fix, printed as one line by the scripts."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class PipelineError(Exception):
    """A failure with a one-line message that names the item and the fix."""


@contextmanager
def one_line_errors(log=None):
    """Turn PipelineError into a single line on stderr (and the rule log) and exit 1.

    Anything else is a bug in this package and keeps its traceback.
    """
    try:
        yield
    except PipelineError as e:
        msg = f"ERROR: {e}"
        print(msg, file=sys.stderr, flush=True)
        if log is not None:
            try:
                with open(log, "a") as f:
                    f.write(msg + "\n")
            except OSError:  # the log may sit on the disk that just filled up: stderr has the line
                pass
        sys.exit(1)
