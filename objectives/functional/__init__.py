"""Pure loss functions: tensors in, scalar out. No modules, no registry.

``contrastive`` (InfoNCE and its relatives, margin losses), ``debiased`` (false- and hard-negative
remedies), ``decoupled`` (DCL / DCLW: InfoNCE without the positive in the denominator),
``multi_label`` (SupCon with multi-hot labels), ``siamese`` (DrLIM's margin loss over all pairs
of a batch), ``non_contrastive`` (VICReg and the successors without negatives), ``distillation``
(DINO's self-distillation: loss, center, teacher temperature) and ``temporal`` (TS2Vec's
per-timestamp losses); every loss is importable from here.
"""
from objectives.functional.contrastive import (  # noqa: F401
    clip_loss,
    contrastive_pair_loss,
    convirt_loss,
    cpc_infonce,
    infonce_loss,
    nt_xent_loss,
    siglip_loss,
    supcon_loss,
    triplet_loss,
)
from objectives.functional.debiased import debiased_loss  # noqa: F401
from objectives.functional.decoupled import decoupled_loss  # noqa: F401
from objectives.functional.distillation import (  # noqa: F401
    dino_center,
    dino_loss,
    teacher_probabilities,
    teacher_temperature,
)
from objectives.functional.non_contrastive import (  # noqa: F401
    barlow_twins_loss,
    byol_loss,
    simsiam_loss,
    vicreg_loss,
)
from objectives.functional.multi_label import multilabel_supcon_loss  # noqa: F401
from objectives.functional.siamese import siamese_loss  # noqa: F401
from objectives.functional.temporal import (  # noqa: F401
    hierarchical_contrastive_loss,
    instance_contrastive_loss,
    temporal_contrastive_loss,
)
