"""Training: the Trainer loop, optimisers and schedules, checkpoints, logs, distributed setup."""
from .batch import Batch, LossOutput
from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from .device import resolve_device
from .optim import Schedule, build_optimizer, clip_gradients
from .tbptt import StreamBatches, detach_state, mask_state, run_with_resets
from .trainer import DivergenceError, Trainer, TrainResult, evaluate

__all__ = ["Trainer", "TrainResult", "DivergenceError", "evaluate", "Batch", "LossOutput",
           "build_optimizer", "Schedule", "clip_gradients", "save_checkpoint", "load_checkpoint",
           "find_checkpoint", "CheckpointError", "resolve_device", "StreamBatches", "run_with_resets",
           "detach_state", "mask_state"]
