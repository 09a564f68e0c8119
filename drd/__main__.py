"""
`python -m drd` and the ``drd`` console script: `drd.cli.run`.

The cyclic garbage collector is off while the command line and the command's module
are imported: those imports allocate a few hundred thousand objects that live for the
whole process, and the collections they would trigger walk them again and again
(about 50 ms of a 0.4 s `drd replicate`). `drd.cli.main` freezes what start-up made
and turns the collector back on before the command runs.
"""

import gc

gc.disable()

from drd.cli import run  # noqa: E402  # imported with the collector off, as said above

if __name__ == "__main__":
    run()
