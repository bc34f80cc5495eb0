"""Contrastive objectives for CLIP-style training (stable module).

Each objective is a pure function over embeddings (float32 inside, any float
input dtype, `keras.ops` only, so it runs on TensorFlow, JAX and PyTorch)
plus a `keras.losses.Loss` wrapper that reads the CLIP model's output dict:

| objective                  | function                 | Loss wrapper            |
|----------------------------|--------------------------|-------------------------|
| CLIP InfoNCE / DCL         | `infonce`                | `InfoNCE`               |
| supervised contrastive     | `supervised_contrastive` | `SupervisedContrastive` |
| SupCon, single modality    | `supcon`                 |                         |
| FILIP token-level contrast | `filip`                  | `FILIP`                 |
| SimCLR NT-Xent             | `nt_xent`                | `NTXent`                |
| MoCo queue InfoNCE         | `queue_infonce`          | `QueueInfoNCE`          |
| SigLIP sigmoid loss        | `siglip`                 | `SigLIP`                |

`WeightedSum` combines several; `get` builds a loss from a name / dict / list.
"""

from keras_clip.losses.base import ContrastiveLoss
from keras_clip.losses.filip import FILIP
from keras_clip.losses.filip import filip
from keras_clip.losses.filip import filip_similarity
from keras_clip.losses.infonce import InfoNCE
from keras_clip.losses.infonce import contrastive_logits
from keras_clip.losses.infonce import infonce
from keras_clip.losses.nt_xent import NTXent
from keras_clip.losses.nt_xent import nt_xent
from keras_clip.losses.queue_infonce import QueueInfoNCE
from keras_clip.losses.queue_infonce import queue_infonce
from keras_clip.losses.registry import get
from keras_clip.losses.registry import names
from keras_clip.losses.siglip import SigLIP
from keras_clip.losses.siglip import siglip
from keras_clip.losses.supervised_contrastive import SupervisedContrastive
from keras_clip.losses.supervised_contrastive import supcon
from keras_clip.losses.supervised_contrastive import supervised_contrastive
from keras_clip.losses.weighted_sum import WeightedSum

__all__ = [
    "ContrastiveLoss",
    "FILIP",
    "InfoNCE",
    "NTXent",
    "QueueInfoNCE",
    "SigLIP",
    "SupervisedContrastive",
    "WeightedSum",
    "contrastive_logits",
    "filip",
    "filip_similarity",
    "get",
    "infonce",
    "names",
    "nt_xent",
    "queue_infonce",
    "siglip",
    "supcon",
    "supervised_contrastive",
]
