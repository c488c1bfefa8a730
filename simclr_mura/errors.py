"""Errors that a user caused (bad flags, missing files): reported as one line, before any work."""
from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class UserError(ValueError):
  """A bad flag value, path or checkpoint; the message says what is wrong and what is accepted."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse for this package's command lines: a bad argument is one line on stderr (`prog: error: ...`, no usage
  block) and exit status 2; `--help` still shows the usage."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def exit_with(prog: str, error: UserError) -> NoReturn:
  """Ends a command line on a `UserError`: its one line on stderr, exit status 2."""
  print(f"{prog}: error: {error}", file=sys.stderr)
  sys.exit(2)
