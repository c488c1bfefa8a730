"""Public import path of SimCLR's contrastive loss (`simclr_mura.objective.contrastive_loss`)."""
from simclr_mura.models.objective import contrast_accuracy, contrast_entropy, contrastive_loss, weight_decay_loss  # noqa: F401
