"""Entropy around tool calls: per-token records of sampled trajectories, window metrics beside
`arpo/dH/*`, and the picture of mean entropy against the position relative to each tool result
(`arpo analyze RUN_DIR`)."""

from arpo.analysis.entropy import entropy_profile, window_entropies
from arpo.analysis.records import TrajectoryLog, entropy_metrics, trajectory_record

__all__ = ["TrajectoryLog", "entropy_metrics", "entropy_profile", "trajectory_record", "window_entropies"]
