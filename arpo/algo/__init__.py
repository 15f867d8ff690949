"""The policy update: GRPO advantages, attribution over the prefix tree, packing, and the
clipped tree loss."""
