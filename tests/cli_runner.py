"""`gateway ARGS` run in this process (no interpreter start-up): exit status and outputs."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass

from gateway.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(*args: object, stdin: str = "") -> Result:
    """`gateway ARGS` with ``stdin`` as its input; argparse exits become the status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(_stdin(stdin))
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return Result(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(text: str):
    # a text stream with .buffer, as the real stdin (`secrets set` reads bytes)
    saved, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")
    try:
        yield
    finally:
        sys.stdin = saved
