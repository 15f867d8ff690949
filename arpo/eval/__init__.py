"""`arpo eval`: a model with tools on benchmark files; accuracy, pass@k, tool use, transcripts."""


def __getattr__(name: str):
    # Lazy: arpo.config imports arpo.eval.config, and the harness imports arpo.config.
    if name == "evaluate":
        from arpo.eval.harness import evaluate

        return evaluate
    raise AttributeError(f"module 'arpo.eval' has no attribute {name!r}")
