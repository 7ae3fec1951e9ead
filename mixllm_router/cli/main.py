"""``mixllm``: train, route and evaluate from the command line.

    mixllm train  --data ../shared/data/routerbench --split train --out runs/router
    mixllm route  --router runs/router --cost-share 0.2 "Write a function that reverses a list"
    mixllm eval   --data ../shared/data/routerbench --out runs/eval [--tune] [--decisions FILE]
    mixllm learn  --router runs/router --state redis://localhost:6379/0   # shared-state learner

``--data`` takes RouterBench files or folders (wide layout, detected from the header) or long
CSV files (``query, model, quality, cost`` …, see ``mixllm_router.data``). ``eval`` uses the
``split`` column (RouterBench: the file names) unless ``--train`` and ``--test`` are given.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .._exceptions import MixLLMError
from . import collect, learn, route, simulate, simulate_online, train
from . import eval as eval_command
from ._common import log

__all__ = ["main", "build_parser"]

#: The sub-commands, in the order ``mixllm --help`` lists them; each module has ``add_parser(sub)``
#: and sets ``func`` to its ``run(args)``.
_COMMANDS = (train, route, eval_command, simulate, simulate_online, learn, collect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixllm", description=__doc__.split("\n\n")[0] if __doc__ else None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


def _format_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> str:
    return f"mixllm: {category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _format_warning  # one readable line per warning, no source echo
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MixLLMError as exc:
        log(f"mixllm: error: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
