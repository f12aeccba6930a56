"""Self-supervised audio-visual objectives, each a module returning a scalar loss.

Every objective takes ``(out, batch, model)``: the model outputs for the batch, the batch
itself (tensors) and the model (for objectives that run extra forwards). Recipes combine
them with weights; see :mod:`edge_sdk.recipe`.
"""

from edge_sdk.objectives.avc import AVCorrespondence
from edge_sdk.objectives.byol_audio import BYOLAudio
from edge_sdk.objectives.clusters import CrossModalClusters
from edge_sdk.objectives.contrastive import GlobalInfoNCE, MILContrastive
from edge_sdk.objectives.distill import DISTILL_OBJECTIVES, EmbedCosine, MapKD, RelationKD
from edge_sdk.objectives.masked import MaskedAV
from edge_sdk.objectives.sync import TemporalSync
from edge_sdk.objectives.zoom_equivariance import ZoomEquivariance

OBJECTIVES = {
    "avc": AVCorrespondence,
    "mil_nce": MILContrastive,
    "infonce": GlobalInfoNCE,
    "sync": TemporalSync,
    "byol_audio": BYOLAudio,
    "zoom_eq": ZoomEquivariance,
    "av_mae": MaskedAV,
    "clusters": CrossModalClusters,
    **DISTILL_OBJECTIVES,  # built with (student, teacher, **params); need a [distill] teacher
}

__all__ = [
    "OBJECTIVES",
    "DISTILL_OBJECTIVES",
    "EmbedCosine",
    "RelationKD",
    "MapKD",
    "AVCorrespondence",
    "MILContrastive",
    "GlobalInfoNCE",
    "TemporalSync",
    "BYOLAudio",
    "ZoomEquivariance",
    "MaskedAV",
    "CrossModalClusters",
]
