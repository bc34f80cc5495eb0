"""Locking a tower for fine-tuning (LiT, Zhai et al. 2022, "LiT: Zero-Shot
Transfer with Locked-image text Tuning").

A tower's lock is `None` (everything trains), `"all"` (the whole tower and
its projection head are frozen, and the tower runs in inference mode), or an
int `N` (everything but the last `N` transformer blocks is frozen; the final
layer norm and the projection head stay trainable).
"""

TOWERS = ("image", "text")


def _blocks(encoder):
    blocks = getattr(encoder, "encoder_layers", None)
    if blocks is None:
        raise ValueError(
            f"Cannot lock part of {type(encoder).__name__}: it has no `encoder_layers` list of transformer "
            "blocks; lock it whole with 'all'."
        )
    return list(blocks)


def lock_tower(model, tower, spec):
    """Freezes `model`'s `tower` ("image" or "text") as `spec` says; returns
    the number of frozen weights. Call before `compile`."""
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}; received {tower!r}.")
    if spec is None:
        return 0
    encoder = getattr(model, f"{tower}_encoder")
    head = getattr(model, f"{tower}_head")
    if spec == "all":
        encoder.trainable = False
        head.trainable = False
        return len(encoder.weights) + len(head.weights)
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 0:
        raise ValueError(
            f"training.lock.{tower} must be null, 'all' or a number of trailing blocks left trainable "
            f"(an int >= 0); received {spec!r}."
        )
    blocks = _blocks(encoder)
    if spec > len(blocks):
        raise ValueError(
            f"training.lock.{tower}={spec} leaves more blocks trainable than the tower has ({len(blocks)})."
        )
    keep = set(id(b) for b in blocks[len(blocks) - spec:]) | {id(getattr(encoder, "layer_norm", None))}
    frozen = 0
    for layer in encoder.layers:
        if id(layer) not in keep and layer.weights:  # embeddings, pre-norm, the earlier blocks
            layer.trainable = False
            frozen += len(layer.weights)
    return frozen
