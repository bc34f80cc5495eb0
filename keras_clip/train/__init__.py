"""Training: one `train(config, output_dir)` for every data source, its fit
loop and resume state, the optimizer, and the run directory."""

from keras_clip.train.loop import fit_epochs, resumed_epoch
from keras_clip.train.optimizer import make_optimizer, resolve_jit_compile
from keras_clip.train.run_dir import write_run
from keras_clip.train.train import train

__all__ = ["train", "fit_epochs", "resumed_epoch", "make_optimizer", "resolve_jit_compile", "write_run"]
