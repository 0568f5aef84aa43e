"""What every command line does with a user's mistake: one line naming it, exit code 2.

Imports neither TensorFlow nor Keras, so the on-device runtime's CLI uses it too.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from absl import flags, logging


def fail(program: str, message: str) -> NoReturn:
    """Prints `PROGRAM: error: MESSAGE` to stderr and exits 2 (absl's flag errors exit 1)."""
    logging.flush()
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def flags_parser(program: str) -> Callable[[list[str]], list[str]]:
    """An `app.run(flags_parser=...)` whose bad flag is one line and exit 2, not absl's exit 1."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(program, str(e))

    return parse

