"""Options shared by several ``probseg`` subcommands, each checked by the core's own parser.

Why a module of its own: predict, batch and evaluate take the same ``--binarize``,
``--worm-width`` and ``--tile``, with one error message for the CLI, the library and the widget.
"""
from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): the message names the option and its range."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _DeprecatedAlias(argparse.Action):
    """An old option name that still works but says (one line, stderr) which name replaced it."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        print(f"probseg: note: {option_string} is deprecated; use --{self.dest}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_binarize_option(parser: argparse.ArgumentParser) -> None:
    """``--binarize`` and its hidden deprecated alias ``--threshold`` (predict, evaluate, batch)."""
    from . import validation as V

    parser.add_argument("--binarize", type=V.argparse_type("binarize", "--binarize"), default=None,
                        help="probability at which a pixel belongs to an instance (default: the model's, 0.75)")
    parser.add_argument("--threshold", dest="binarize", action=_DeprecatedAlias, help=argparse.SUPPRESS,
                        type=V.argparse_type("binarize", "--threshold"))


def _checked(parse, flag: str):
    """An argparse ``type=`` from a core parser (one message for CLI, library and widget)."""

    def convert(text: str):
        from .validation import OptionError

        try:
            return parse(text, flag)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{flag} ")) from None

    convert.__name__ = flag.lstrip("-")
    return convert


def add_worm_width_option(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--worm-width PX|auto|off`` (predict, batch, evaluate): the object size of issue 19."""
    from .scale import TRAINING_WORM_WIDTH, parse_worm_width

    parser.add_argument("--worm-width", type=_checked(parse_worm_width, "--worm-width"), default=default,
                        metavar="PX|auto|off",
                        help=f"typical worm width in pixels: the image is resampled so worms are {TRAINING_WORM_WIDTH} px "
                             "wide (the training data's) and the results mapped back to your pixels; 'auto' estimates "
                             f"it from the image, 'off' segments at the image's own scale (default: {default})")


def add_tile_option(parser: argparse.ArgumentParser) -> None:
    """``--tile PX`` (predict, batch): tiled inference of issue 17 (bounded memory for big images)."""
    from . import validation as V

    side = int(V.AUTO_TILE_PX**0.5)
    parser.add_argument("--tile", type=V.argparse_type("tile", "--tile"), default=None, metavar="PX",
                        help=f"segment images longer than PX pixels in tiles with cores of PX px (memory bounded by the "
                             f"tile, worms across tile borders kept whole); 0: never (default: images of more than "
                             f"{side}x{side} pixels, with {V.AUTO_TILE_CORE} px cores)")
