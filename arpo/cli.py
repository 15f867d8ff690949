"""`arpo train|eval [RECIPE.yaml] [key=value ...]`; also `python -m arpo` and `torchrun -m arpo`."""

from __future__ import annotations

import argparse
import sys

from arpo import __version__
from arpo.errors import ArpoError

EPILOG = """examples:
  arpo train                                   # embedded default: SmolLM2-135M, arithmetic tool task
  arpo train configs/default.yaml trainer.steps=5 rollout.M=4
  torchrun --nproc_per_node=8 -m arpo train configs/qwen2.5-7b-arpo.yaml
  arpo eval model.path=runs/default/checkpoints/step-000016/hf data=gsm8k,math500 greedy=false k=5
  arpo analyze runs/default                      # entropy around tool results: runs/default/entropy.png
  arpo config configs/default.yaml rollout.N=8   # print the resolved config

recipes: a YAML file, or one shipped with arpo by name from any directory
(configs/default.yaml, configs/qwen2.5-7b-arpo.yaml; the files are in arpo/configs/).
"""


def _split(args: list[str]) -> tuple[str | None, list[str]]:
    recipe = None
    overrides = []
    for a in args:
        if "=" not in a and a.endswith((".yaml", ".yml")) and recipe is None:
            recipe = a
        elif "=" not in a:
            raise ArpoError(f"unexpected argument {a!r}: give a recipe file (.yaml) and key=value overrides")
        else:
            overrides.append(a)
    return recipe, overrides


# Short forms `arpo eval` accepts for its most used keys.
EVAL_ALIASES = {"data": "eval.data", "k": "eval.k", "engine": "rollout.engine", "greedy": "eval.greedy"}


def _config(args: list[str], aliases: dict[str, str] | None = None):
    from arpo.config import load_config

    recipe, overrides = _split(args)
    return load_config(recipe, _expand(overrides, aliases or {}))


def _expand(overrides: list[str], aliases: dict[str, str]) -> list[str]:
    """`k=5` -> `eval.k=5` for the short forms in `aliases`."""
    return [aliases.get(o.split("=", 1)[0], o.split("=", 1)[0]) + "=" + o.split("=", 1)[1] for o in overrides]


def cmd_train(args: list[str]) -> int:
    cfg = _config(args)
    from arpo.trainer.run import train

    train(cfg)
    return 0


def cmd_eval(args: list[str]) -> int:
    from arpo.eval.follow import load_eval_config

    recipe, overrides = _split(args)
    cfg = load_eval_config(recipe, _expand(overrides, EVAL_ALIASES))
    from arpo.eval.harness import evaluate

    evaluate(cfg)
    return 0


def cmd_analyze(args: list[str]) -> int:
    paths = [a for a in args if "=" not in a]
    options = dict(a.split("=", 1) for a in args if "=" in a)
    unknown = sorted(set(options) - {"k", "out"})
    if len(paths) != 1 or unknown:
        raise ArpoError(
            "usage: arpo analyze RUN_DIR|TRAJECTORIES.jsonl [k=20] [out=PATH_STEM]"
            + (f" (unknown option {unknown[0]!r})" if unknown else "")
        )
    if not options.get("k", "20").isdigit() or int(options.get("k", "20")) < 1:
        raise ArpoError(f"k must be a positive integer, got {options['k']!r}")
    from arpo.analysis.report import analyze

    analyze(paths[0], int(options.get("k", "20")), options.get("out", ""))
    return 0


def cmd_config(args: list[str]) -> int:
    from arpo.config import to_yaml

    print(to_yaml(_config(args)), end="")
    return 0


COMMANDS = {
    "train": (cmd_train, "train a policy with ARPO or GRPO (N = M)"),
    "eval": (cmd_eval, "evaluate a model with tools on benchmark files"),
    "analyze": (cmd_analyze, "draw token entropy around tool results from a run's trajectories"),
    "config": (cmd_config, "print the resolved config of a recipe and overrides"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arpo",
        description="ARPO: agentic reinforced policy optimization for tool-using LLM agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"arpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("args", nargs="*", metavar="[RECIPE.yaml] [key=value ...]")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[ns.command][0](ns.args)
    except ArpoError as e:
        print(f"arpo: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0] == "arpo":
            raise
        # `pip install arpo` alone brings the kernels' dependencies only
        print(f"arpo: error: {e.name} is not installed; `arpo {ns.command}` needs pip install 'arpo[train]'",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print("arpo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
