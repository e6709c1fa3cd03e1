"""The ``seqkit`` command line: a thin layer over seqkit's Python API.

Each command parses its options and calls one library function. Errors the
library raises for bad input (``ValueError``, ``OSError``, ``SeqkitError``)
become one line on stderr and exit status 2; ``--debug`` shows the traceback.
"""

import sys

import click

from seqkit import __version__
from seqkit.errors import SeqkitError

USER_ERRORS = (SeqkitError, ValueError, OSError)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqkit")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """seqkit: recurrent sequence models for Keras 3 / TensorFlow."""
    ctx.obj = {"debug": debug}


def main(argv=None):
    """Console entry point: run the CLI, turning user errors into one line."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=argv, prog_name="seqkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except USER_ERRORS as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        click.echo(f"error: {message}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
