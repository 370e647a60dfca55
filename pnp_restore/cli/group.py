"""The ``pnp-restore`` click group and its error boundary, the only one of the program.

:class:`Group` records the raw arguments (for the sidecars), lists the lazily
imported commands (``train-prior``, ``bench``) without importing them, and turns
every error of every command into ``Error: <one line>`` (:meth:`Group.invoke`).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import click

#: ``ctx.meta`` keys: the raw arguments of the run, and whether ``--debug`` was given.
ARGV_KEY = "pnp_restore.argv"
DEBUG_KEY = "pnp_restore.debug"

#: context settings of the group and of every command.
CONTEXT = {"help_option_names": ["-h", "--help"]}

OOM_ADVICE = "out of memory; try --tile 256, a smaller --batch-size, or --dtype float16 on a GPU"


class Group(click.Group):
    """Remembers the raw arguments, registers lazy commands and is the one error boundary."""

    #: name -> (module, attribute, short help shown without importing the module)
    lazy = {
        "train-prior": ("pnp_restore.train", "train_prior", "Train the built-in prior on a folder of images."),
        "bench": ("pnp_restore.benchmarks.cli", "bench", "Benchmark solvers and priors on standard test sets."),
    }

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; any error becomes ``Error: <one line>`` and exit status 1 (130 for Ctrl-C).

        Covers the lazy commands too, so they only raise project errors. With
        ``--debug`` (of the group or of a command) the exception propagates.
        """
        with _warnings_to_stderr():
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except BaseException as err:
                if ctx.meta.get(DEBUG_KEY) or not isinstance(err, (Exception, KeyboardInterrupt)):
                    raise
                exc = click.ClickException(describe(err))
                if isinstance(err, KeyboardInterrupt):
                    exc.exit_code = 130
                raise exc from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, attr, _ = self.lazy[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            return _unavailable(name, err)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = [
            (n, self.lazy[n][2] if n in self.lazy else self.commands[n].get_short_help_str(limit))
            for n in names
            if n in self.lazy or not self.commands[n].hidden
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def describe(err: BaseException) -> str:
    """One line for the user: the message of our errors, advice for out-of-memory and OS errors."""
    from ..errors import PnPRestoreError

    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(err, PnPRestoreError):
        return text
    from ..memory import is_out_of_memory  # (imports torch: only for errors of other kinds)

    if is_out_of_memory(err):
        return OOM_ADVICE
    if isinstance(err, OSError):
        from ..io import describe_os_error

        return describe_os_error(err)
    return f"{type(err).__name__}: {text} (run again with --debug for the traceback)"


class _warnings_to_stderr:
    """Print Python warnings as ``Warning: ...`` lines instead of source locations."""

    def __enter__(self) -> None:
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = lambda message, *a, **k: click.echo(f"Warning: {message}", err=True)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[DEBUG_KEY] = True


#: ``--debug``, for the group and each command: keep the traceback (see :meth:`Group.invoke`).
debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                            help="Show the Python traceback on errors.")


def _unavailable(name: str, err: Exception) -> click.Command:
    """A stand-in for a lazy command whose module cannot be imported: it fails with one line."""

    def fail(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"`pnp-restore {name}` is unavailable in this installation ({err}); reinstall pnp-restore")

    return click.Command(
        name,
        callback=fail,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"(unavailable: {err})",
    )


@click.group(cls=Group, context_settings={**CONTEXT, "max_content_width": 100})
@click.version_option(package_name="pnp-restore", prog_name="pnp-restore")
@debug_option
def main() -> None:
    """pnp-restore: training-free image restoration with diffusion priors.

    One pretrained denoiser restores any linear degradation: inpainting,
    super-resolution, deblurring, denoising. Run `pnp-restore COMMAND --help`
    for the options and an example of each command.
    """
