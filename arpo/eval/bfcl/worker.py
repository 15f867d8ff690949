"""BFCL's own data, prompts, decoders and checkers behind a JSON-lines pipe.

Runs as a script inside the separate `bfcl-eval` environment (`make .venv-bfcl`), never inside
arpo's: bfcl-eval pins an old numpy and imports every provider SDK, so arpo talks to it through
this process (see bridge.py). It imports nothing of arpo. One request per line on stdin, one
answer per line on the original stdout (BFCL's own prints go to stderr):

    {"op": "load", "categories": [...]}       -> {"entries": {category: [entry, ...]}}
    {"op": "check", "category", "id", "style", "output"}     -> {"valid", "error", "error_type"}
    {"op": "execute", "category", "id", "style", "output"}   -> {"calls", "results"} | {"error"}
    {"op": "reset", "id"}                     -> {} (forgets an entry's simulated API state)

`style` says how `output` is to be decoded: "prompt" (raw text in BFCL's `[f(a=1)]` prompt
style, decoded by BFCL's own prompting decoder) or "decoded" (calls arpo already decoded from a
function-calling template: `{"calls": [{"name", "arguments"}]}` or `{"error": reason}`). A
multi-turn `output` is a list of turns, each a list of steps of that form. Verdicts come from
BFCL's own per-entry evaluation functions, so its rules (decoder failures, relevance and
irrelevance, AST matching, multi-turn state and response checks) apply unchanged.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile

# bfcl-eval writes lock files under its project root: keep them out of its installed package.
os.environ.setdefault("BFCL_PROJECT_ROOT", tempfile.mkdtemp(prefix="arpo-bfcl-"))

from bfcl_eval.constants.default_prompts import (  # noqa: E402
    DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC,
    DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING,
)
from bfcl_eval.constants.enums import Language, ModelStyle, ReturnFormat  # noqa: E402
from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI  # noqa: E402
from bfcl_eval.eval_checker import eval_runner  # noqa: E402
from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils  # noqa: E402
from bfcl_eval.model_handler import utils as handler_utils  # noqa: E402
from bfcl_eval.utils import (  # noqa: E402
    is_function_calling_format_output,
    is_java,
    is_js,
    is_multi_turn,
    is_relevance_or_irrelevance,
    load_dataset_entry,
    load_ground_truth_entry,
)

# A registered model name whose config keeps dotted function names (arpo maps names itself).
CHECKER_MODEL = "Qwen/Qwen3-8B"


class Decoder:
    """Stands where BFCL's evaluation expects a model handler: decodes one step's output."""

    def __init__(self, style: str):
        self.style = style

    def decode_ast(self, output, language=ReturnFormat.PYTHON, has_tool_call_tag=False):
        if self.style == "prompt":
            return handler_utils.default_decode_ast_prompting(output, language, has_tool_call_tag)
        if "error" in output:
            raise ValueError(output["error"])
        return [{call["name"]: call["arguments"]} for call in output["calls"]]

    def decode_execute(self, output, has_tool_call_tag=False):
        if self.style == "prompt":
            return handler_utils.default_decode_execute_prompting(output, has_tool_call_tag)
        return handler_utils.convert_to_function_call(self.decode_ast(output))


def _language(category: str):
    if is_java(category):
        return Language.JAVA, ReturnFormat.JAVA
    if is_js(category):
        return Language.JAVASCRIPT, ReturnFormat.JAVASCRIPT
    return Language.PYTHON, ReturnFormat.PYTHON


def _tools(functions: list[dict]) -> list[dict]:
    """Function docs as JSON-schema tools, converted as BFCL converts them for open models' FC
    mode, in the `{"type": "function", "function": ...}` form chat templates read."""
    converted = handler_utils.convert_to_tool(functions, GORILLA_TO_OPENAPI, ModelStyle.OSSMODEL)
    return [{"type": "function", "function": tool} for tool in converted]


def _system_prompt(entry: dict) -> str:
    """BFCL's prompt-style system prompt (function docs plus the `[f(a=1)]` instructions)."""
    first_turn = copy.deepcopy(entry["question"][0]) or [{"role": "user", "content": ""}]
    messages = handler_utils.system_prompt_pre_processing_chat_model(
        first_turn, entry["function"], entry["id"]
    )
    return messages[0]["content"]


def _holdouts(entry: dict) -> dict:
    """Turns at which functions held out of the docs are given (BFCL's missing-function turns)."""
    return {
        turn: {
            "tools": _tools(functions),
            "fc_message": DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC,
            "prompt_message": DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_PROMPTING.format(
                functions=functions
            ),
        }
        for turn, functions in entry.get("missed_function", {}).items()
    }


class Worker:
    def __init__(self):
        self.prompts: dict[str, dict] = {}  # id -> BFCL's test entry, as its checker reads it
        self.answers: dict[str, object] = {}  # id -> possible answer / ground truth
        self.checks = 0

    def load(self, categories: list[str]) -> dict:
        out = {}
        for category in categories:
            # The model sees the docs with BFCL's language hints; its checker reads them without.
            entries = load_dataset_entry(category)
            plain = load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)
            answers = [] if is_relevance_or_irrelevance(category) else load_ground_truth_entry(category)
            rows = []
            for i, entry in enumerate(entries):
                self.prompts[entry["id"]] = plain[i]
                if answers:
                    self.answers[entry["id"]] = answers[i]["ground_truth"]
                rows.append(
                    {
                        **{k: entry[k] for k in ("id", "question", "function")},
                        "checker_function": plain[i]["function"],  # without the language hints
                        "tools": _tools(entry["function"]),
                        "system_prompt": _system_prompt(entry),
                        "holdouts": _holdouts(entry),
                        "ground_truth": self.answers.get(entry["id"]),
                    }
                )
            out[category] = rows
        return {"entries": out}

    def check(self, category: str, entry_id: str, style: str, output) -> dict:
        decoder = Decoder(style)
        prompt = copy.deepcopy(self.prompts[entry_id])
        answer = copy.deepcopy(self.answers.get(entry_id))
        if is_multi_turn(category):
            # A fresh name per check: BFCL keeps simulated API instances in module globals.
            self.checks += 1
            tag = f"arpo_check_{self.checks}"
            try:
                verdict = eval_runner._evaluate_single_multi_turn_entry(
                    decoder, entry_id, output, answer, prompt, tag, category
                )
            finally:
                self._forget(tag)
            error = verdict.get("error", {})
            return _verdict(verdict, error.get("error_message"), error.get("error_type"))
        if is_relevance_or_irrelevance(category):
            verdict = eval_runner._evaluate_single_relevance_entry(
                decoder, entry_id, output, prompt, CHECKER_MODEL, category
            )
        else:
            language, return_format = _language(category)
            verdict = eval_runner._evaluate_single_ast_entry(
                decoder, entry_id, output, answer, prompt, CHECKER_MODEL, category, language, return_format
            )
        return {
            **_verdict(verdict, verdict.get("error"), verdict.get("error_type")),
            "calls": _decoded_calls(decoder, output, _language(category)[1]),
        }

    def execute(self, category: str, entry_id: str, style: str, output) -> dict:
        """One step of a multi-turn entry: decode the model's calls and run them on the entry's
        simulated APIs, whose state carries over to its next steps (until `reset`)."""
        try:
            calls = Decoder(style).decode_execute(output)
        except Exception as e:  # BFCL ends the turn on an output it cannot decode
            return {"error": f"{type(e).__name__}: {e}"}
        if multi_turn_utils.is_empty_execute_response(calls):
            return {"error": "no function call"}
        entry = self.prompts[entry_id]
        results, _ = multi_turn_utils.execute_multi_turn_func_call(
            calls,
            entry["initial_config"],
            entry["involved_classes"],
            "arpo_run",
            entry_id,
            long_context=("long_context" in category or "composite" in category),
        )
        return {"calls": calls, "results": results}

    def reset(self, entry_id: str) -> dict:
        self._forget(f"arpo_run_{entry_id}")
        return {}

    @staticmethod
    def _forget(prefix: str) -> None:
        prefix = prefix.replace("-", "_").replace(".", "_").replace("/", "_").replace(":", "_")
        names = vars(multi_turn_utils)
        for name in [n for n in names if n.startswith(prefix + "_")]:
            del names[name]


def _decoded_calls(decoder: Decoder, output, return_format) -> list[dict]:
    """The calls BFCL's decoder reads in a single-turn answer, as `{"name", "arguments"}`."""
    try:
        decoded = decoder.decode_ast(output, return_format)
    except Exception:
        return []
    if not is_function_calling_format_output(decoded):
        return []
    return [{"name": name, "arguments": args} for call in decoded for name, args in call.items()]


def _verdict(verdict: dict, error, error_type) -> dict:
    if verdict["valid"]:
        return {"valid": True, "error": "", "error_type": ""}
    messages = error if isinstance(error, list) else [str(error)]
    return {"valid": False, "error": " ".join(str(m) for m in messages), "error_type": error_type or ""}


def serve(stdin, stdout) -> None:
    worker = Worker()
    ops = {
        "load": lambda r: worker.load(r["categories"]),
        "check": lambda r: worker.check(r["category"], r["id"], r["style"], r["output"]),
        "execute": lambda r: worker.execute(r["category"], r["id"], r["style"], r["output"]),
        "reset": lambda r: worker.reset(r["id"]),
    }
    stdout.write(json.dumps({"ready": True}) + "\n")
    stdout.flush()
    for line in stdin:
        request = json.loads(line)
        try:
            answer = {"ok": ops[request["op"]](request)}
        except Exception as e:  # reported to arpo, which scores the entry as failed with this reason
            answer = {"failed": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(answer, default=str) + "\n")
        stdout.flush()


if __name__ == "__main__":
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # BFCL prints progress; only answers go to the protocol stream
    os.dup2(sys.stderr.fileno(), 1)
    serve(sys.stdin, protocol)
