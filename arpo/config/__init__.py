"""The typed config tree, the ground floor of arpo: one dataclass per component (this package's
modules), the `Config` root, and the loader. Nothing here imports the rest of arpo (only its error
types), so every layer above may import it."""

from arpo.config.algo import AlgoConfig
from arpo.config.data import DataConfig
from arpo.config.eval import EvalConfig
from arpo.config.loader import (
    RECIPES,
    REDACTED,
    load_config,
    recipe_path,
    redacted,
    save_config,
    to_yaml,
    validate,
)
from arpo.config.model import ModelConfig
from arpo.config.reward import RewardConfig
from arpo.config.rollout import RolloutConfig, SamplerConfig, VllmConfig
from arpo.config.root import Config
from arpo.config.tools import PythonToolConfig, SearchToolConfig, ToolsConfig
from arpo.config.trainer import TrainerConfig

__all__ = [
    "RECIPES",
    "REDACTED",
    "AlgoConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "PythonToolConfig",
    "RewardConfig",
    "RolloutConfig",
    "SamplerConfig",
    "SearchToolConfig",
    "ToolsConfig",
    "TrainerConfig",
    "VllmConfig",
    "load_config",
    "recipe_path",
    "redacted",
    "save_config",
    "to_yaml",
    "validate",
]
