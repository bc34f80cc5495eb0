"""keras_clip.losses.get: names, dicts, lists and errors."""

import keras
import pytest

from keras_clip import losses
from keras_clip.losses import FILIP
from keras_clip.losses import InfoNCE
from keras_clip.losses import NTXent
from keras_clip.losses import QueueInfoNCE
from keras_clip.losses import SigLIP
from keras_clip.losses import SupervisedContrastive
from keras_clip.losses import WeightedSum


@pytest.mark.parametrize(
    "name,cls,decoupled",
    [
        ("infonce", InfoNCE, False),
        ("InfoNCE", InfoNCE, False),
        ("dcl", InfoNCE, True),
        ("decoupled_infonce", InfoNCE, True),
        ("supcon", SupervisedContrastive, None),
        ("supervised_contrastive", SupervisedContrastive, None),
        ("filip", FILIP, None),
        ("nt_xent", NTXent, None),
        ("NT-Xent", NTXent, None),
        ("simclr", NTXent, None),
        ("siglip", SigLIP, None),
        ("moco", QueueInfoNCE, None),
    ],
)
def test_names(name, cls, decoupled):
    loss = losses.get(name)
    assert type(loss) is cls
    if decoupled is not None:
        assert loss.decoupled is decoupled


def test_dict_with_options():
    loss = losses.get({"name": "nt_xent", "temperature": 0.3})
    assert isinstance(loss, NTXent) and loss.temperature == 0.3
    assert losses.get({"name": "filip", "chunk_size": 4}).chunk_size == 4
    assert losses.get({"name": "dcl"}).decoupled


def test_list_gives_weighted_sum():
    loss = losses.get(
        [{"name": "infonce"}, {"name": "simclr", "temperature": 0.2, "weight": 0.5}]
    )
    assert isinstance(loss, WeightedSum)
    assert [type(term) for term in loss.losses] == [InfoNCE, NTXent]
    assert loss.weights == [1.0, 0.5]
    assert loss.losses[1].temperature == 0.2
    mixed = losses.get(["siglip", FILIP()])
    assert mixed.weights == [1.0, 1.0]


def test_single_dict_with_weight_gives_weighted_sum():
    loss = losses.get({"name": "siglip", "weight": 2.0})
    assert isinstance(loss, WeightedSum) and loss.weights == [2.0]


def test_instances_and_serialized_losses():
    instance = SigLIP()
    assert losses.get(instance) is instance
    serialized = keras.saving.serialize_keras_object(InfoNCE(decoupled=True))
    assert losses.get(serialized).decoupled


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown contrastive loss 'clipp'") as e:
        losses.get("clipp")
    for name in ("infonce", "dcl", "supcon", "filip", "nt_xent", "siglip"):
        assert name in str(e.value)
    with pytest.raises(ValueError, match="Valid names"):
        losses.get({"name": "nope"})


def test_bad_identifiers():
    with pytest.raises(ValueError, match="'name' key"):
        losses.get({"temperature": 0.1})
    with pytest.raises(ValueError, match="Invalid options"):
        losses.get({"name": "siglip", "temperature": 0.1})
    with pytest.raises(ValueError, match="empty list"):
        losses.get([])
    with pytest.raises(ValueError, match="Cannot interpret"):
        losses.get(3)
