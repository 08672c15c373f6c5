"""User-facing errors: each carries one readable line naming the problem and the fix.

`wgan_jax.main` (and the other command-line entry points) print the message of a
`UserError` as a single line on stderr and exit non-zero, without a traceback.
"""


class UserError(Exception):
  """A problem with what the user asked for (config, data, workdir, checkpoint)."""


class ConfigError(UserError):
  """An unknown config key, an unknown name or an invalid value."""


class DataError(UserError):
  """A dataset that is missing, unprepared or of the wrong shape."""


class WorkdirError(UserError):
  """A workdir that cannot be written or holds an incompatible run."""
