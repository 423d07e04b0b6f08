"""The ``neurocrane`` command line: ``neurocrane <command> [arguments]``.

Commands live in a dispatch table, :data:`COMMANDS`; a module adds one with
:func:`register_command` (each command receives its own argument list and returns an exit
status). Built in:

* ``neurocrane train [hydra overrides]`` — train from the packaged Hydra config tree
  (``neurocrane train --help`` lists the config groups).
* ``neurocrane describe PATH_OR_REPO`` — print the pipeline of a YAML/JSON pipeline file, a
  saved model folder or a Hugging Face repo id.

Example:
    $ neurocrane train experiment=pretrain_synthetic trainer.max_epochs=1
    $ neurocrane describe pipelines/quickstart.yaml --sampling-rate 2048 --duration 1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "Command", "main", "register_command"]


@dataclass(frozen=True)
class Command:
    """One subcommand: ``run(argv) -> exit status`` and a one-line help text."""

    name: str
    run: Callable[[list[str]], int]
    help: str


COMMANDS: dict[str, Command] = {}


def register_command(name: str, run: Callable[[list[str]], int], help: str) -> None:
    """Add a subcommand (``neurocrane <name> ...``). Registering a name twice replaces it.

    Args:
        name: The subcommand word.
        run: Called with the arguments after the subcommand; returns the exit status.
        help: One line shown by ``neurocrane --help``.

    Example:
        >>> register_command("evaluate", evaluate_main, "evaluate a model on benchmarks")
    """
    COMMANDS[name] = Command(name, run, help)


def _train(argv: list[str]) -> int:
    from neurocrane.train import main as train_main

    return train_main(argv, prog=sys.argv[0])


def _describe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="neurocrane describe",
        description="Print the preprocessing pipeline of a pipeline file (.yaml/.yml/.json), a saved model folder "
        "or a Hugging Face repo id, step by step with the data shape after each step.",
    )
    parser.add_argument("source", help="pipeline file, model folder, or Hub repo id (e.g. lab-a/seeg-foundation-v1)")
    parser.add_argument("--sampling-rate", type=float, default=None, help="input sampling rate in Hz")
    parser.add_argument("--channels", type=int, default=None, help="number of input channels")
    parser.add_argument("--duration", type=float, default=None, help="window length in seconds (needs --sampling-rate)")
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) for a repo id")
    args = parser.parse_args(argv)

    from pathlib import Path

    from neurocrane import Pipeline, SignalSpec
    from neurocrane.errors import NeuroCraneError

    try:
        if Path(args.source).exists():
            pipeline = Pipeline.load(args.source)
            default_spec = _model_input_spec(Path(args.source))
        elif args.source.endswith((".yaml", ".yml", ".json")):
            parser.error(f"no such file: {args.source}")
        else:
            hub = {"revision": args.revision} if args.revision else {}
            pipeline = Pipeline.from_pretrained(args.source, **hub)
            default_spec = None
        spec = default_spec
        if args.sampling_rate is not None or args.channels is not None or args.duration is not None:
            n_times = None
            if args.duration is not None:
                if args.sampling_rate is None:
                    parser.error("--duration needs --sampling-rate")
                n_times = round(args.duration * args.sampling_rate)
            spec = SignalSpec(shape=(None, args.channels, n_times), sampling_rate=args.sampling_rate)
        print(pipeline.describe(spec))
    except (NeuroCraneError, OSError) as err:
        notes = "".join(f"\n  ({n})" for n in getattr(err, "__notes__", []))
        print(f"neurocrane describe: error: {err}{notes}", file=sys.stderr)
        return 1
    return 0


def _model_input_spec(path: object) -> object:
    """The input spec a saved model's config declares (``None`` for a pipeline file)."""
    from pathlib import Path

    from neurocrane import SignalSpec
    from neurocrane.pipeline.io import loads_json

    config_path = Path(str(path)) / "config.json"
    if not config_path.is_file():
        return None
    config = loads_json(config_path.read_text(encoding="utf-8"))
    rate, channels, length = config.get("sampling_rate"), config.get("n_channels"), config.get("context_length")
    if rate is None and channels is None:
        return None
    n_times = round(length * rate) if length and rate else None
    try:
        return SignalSpec(shape=(None, channels, n_times), sampling_rate=rate)
    except Exception:  # a description never fails because of odd metadata
        return None


register_command("train", _train, "train a model: neurocrane train [hydra overrides] (try --help)")
register_command("describe", _describe, "print the pipeline of a pipeline file, model folder or Hub repo id")
register_command("evaluate", lambda argv: __import__("neurocrane.evaluation.cli", fromlist=["main"]).main(argv),
                 "evaluate a model on benchmarks: neurocrane evaluate MODEL_PATH_OR_REPO [overrides]")


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [f"  {c.name:<{width}}  {c.help}" for c in COMMANDS.values()]
    return "usage: neurocrane <command> [arguments]\n\ncommands:\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurocrane`` console script.

    Args:
        argv: Arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The command's exit status (2 for an unknown command).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        from neurocrane import __version__

        print(f"neurocrane {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        import difflib

        close = difflib.get_close_matches(args[0], list(COMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        sys.stderr.write(f"neurocrane: unknown command '{args[0]}'.{hint}\n\n{_usage()}")
        return 2
    return int(command.run(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
