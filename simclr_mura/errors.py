"""Errors that a user caused (bad flags, missing files): reported as one line, before any training."""


class UserError(ValueError):
  """A bad flag value, path or checkpoint; the message says what is wrong and what is accepted."""
