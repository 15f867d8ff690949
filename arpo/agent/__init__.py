"""The agent: dataset example -> prompt ids -> rollout engine (built from its own config sections)
-> tool calls through a parser and executor -> reward -> a scored trajectory group. `arpo train` and
`arpo eval` both go through it; weight sync stays with the trainer."""
