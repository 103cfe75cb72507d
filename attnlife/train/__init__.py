"""attnlife.train: the training loop (`trainer.train`, `trainer.Trainer`), the LR schedule
(`schedule.lr_at`), the checkpoint series (`checkpoint_series`), resume state
(`checkpointing`), device / precision / DDP setup (`runtime`) and text sampling (`sampling`).

Entry point for users: `attnlife.run.run_training(config, callbacks)`; see docs/training.md.
The submodules are imported explicitly (this package import stays light).
"""
from attnlife.train.checkpoint_series import checkpoint_steps, is_checkpoint_step, steps_to_remove
from attnlife.train.schedule import lr_at

__all__ = ["checkpoint_steps", "is_checkpoint_step", "lr_at", "steps_to_remove"]
