"""The ``keras-routing`` command line app, apart from the library: ``cli`` reads the command
line and chooses the Keras backend, then ``commands`` runs the subcommand. The library
(everything outside ``keras_routing.app``) never imports it.
"""


class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit status 2."""
