import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_clip")
class ClipValue(keras.constraints.Constraint):
    """Clamps a weight into `[min_value, max_value]` after each optimizer step.

    Keras applies a variable's constraint after the optimizer updates it, on
    every backend, so the clamp never enters the forward pass (clipping in the
    forward pass would zero the gradient of the log-temperature at the bound).

    Args:
        min_value: float. Lower bound.
        max_value: float. Upper bound.
    """

    def __init__(self, min_value, max_value):
        if min_value > max_value:
            raise ValueError(
                f"ClipValue needs min_value <= max_value; received "
                f"min_value={min_value}, max_value={max_value}."
            )
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def __call__(self, w):
        return ops.clip(w, self.min_value, self.max_value)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value}


@keras.saving.register_keras_serializable(package="keras_clip")
class LogitScale(keras.layers.Layer):
    """The learnable temperature of contrastive learning, as a log-scale.

    Holds one scalar weight `t` and returns `exp(t)`: the factor that turns
    cosine similarities into logits (`logits = exp(t) * cos_sim`, i.e.
    `1 / temperature`). Learning `t` instead of the scale keeps it positive
    and makes the optimizer's steps multiplicative. `t` is initialised to
    `log(init_scale)` (CLIP: `log(1 / 0.07)`) and kept in
    `[log(min_scale), log(max_scale)]` (CLIP: `[0, log 100]`) by a weight
    constraint applied after every optimizer step.

    Optionally also holds a learnable logit bias `b` (SigLIP: init -10).
    The weights are float32 and never autocast, so mixed precision leaves
    the temperature exact.

    Args:
        init_scale: float. Initial `exp(t)`. Defaults to `1 / 0.07`.
        max_scale: float. Upper bound of `exp(t)`. Defaults to `100`.
        min_scale: float. Lower bound of `exp(t)`. Defaults to `1`.
        learnable: bool. If False, `t` is frozen (a fixed temperature).
        bias_init: optional float. If set, a learnable scalar logit bias is
            created with this initial value and returned by `bias()`.

    Example:
    ```python
    scale = keras_clip.models.LogitScale(init_scale=1 / 0.05, learnable=False)
    scale.build()
    float(scale())  # 20.0
    ```

    Reference: Radford et al., "Learning Transferable Visual Models From
    Natural Language Supervision", 2021 (section 2.5).
    """

    def __init__(
        self,
        init_scale=1.0 / 0.07,
        max_scale=100.0,
        min_scale=1.0,
        learnable=True,
        bias_init=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 < min_scale <= max_scale:
            raise ValueError(
                "LogitScale needs 0 < min_scale <= max_scale; received "
                f"min_scale={min_scale}, max_scale={max_scale}."
            )
        if not min_scale <= init_scale <= max_scale:
            raise ValueError(
                f"init_scale={init_scale} lies outside [min_scale, max_scale] = "
                f"[{min_scale}, {max_scale}]; raise max_scale or lower init_scale."
            )
        self.init_scale = float(init_scale)
        self.max_scale = float(max_scale)
        self.min_scale = float(min_scale)
        self.learnable = bool(learnable)
        self.bias_init = None if bias_init is None else float(bias_init)

    def build(self, input_shape=None):
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.init_scale)),
            trainable=self.learnable,
            constraint=ClipValue(math.log(self.min_scale), math.log(self.max_scale)),
            dtype="float32",
            autocast=False,
            name="log_scale",
        )
        self.logit_bias = None
        if self.bias_init is not None:
            self.logit_bias = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.bias_init),
                trainable=True,
                dtype="float32",
                autocast=False,
                name="logit_bias",
            )
        self.built = True

    def call(self, inputs=None):
        return ops.exp(self.log_scale)

    def bias(self):
        """The logit bias (a float32 scalar), or None when built without one."""
        return None if self.logit_bias is None else ops.convert_to_tensor(self.logit_bias)

    def compute_output_shape(self, input_shape=None):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "init_scale": self.init_scale,
                "max_scale": self.max_scale,
                "min_scale": self.min_scale,
                "learnable": self.learnable,
                "bias_init": self.bias_init,
            }
        )
        return config
