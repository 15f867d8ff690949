"""`arpo eval`: a model with tools on benchmark files; accuracy, pass@k, tool use, transcripts.
The entry point is `arpo.eval.harness.evaluate`."""
