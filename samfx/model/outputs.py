"""What the model returns: one decoder pass over queries, and a clip's per-frame outputs."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from samfx.contracts.interfaces import DecoderOutput, Prompts


@dataclass
class SegOutput:
    """One decoder pass over Q queries, with the full-resolution logits."""

    logits: Tensor          # (Q,1,S,S) full-resolution mask logits
    decoded: DecoderOutput  # low-res logits (Q,1,h',w'), IoU (Q,1), tokens, object score
    prompts: Prompts

    @property
    def low_res(self) -> Tensor:
        return self.decoded.low_res

    @property
    def iou(self) -> Tensor:
        return self.decoded.iou


@dataclass
class ClipOutput:
    """``forward_clip`` result. logits (B,T,K,S,S), iou (B,T,K) and object_score (B,T,K) are None when
    ``on_frame`` consumed each frame (object_score also when the decoder has none); targets (B,T,K,S,S)
    binary per-class targets when labels were given."""
    logits: Tensor | None
    iou: Tensor | None
    targets: Tensor | None
    labeled: Tensor             # (B,T) bool: frames whose labels count in losses/metrics
    classes: list[int]
    object_score: Tensor | None = None   # (B,T,K) the decoder's object-presence logits (SAM2)


def class_targets(label_map: Tensor, cls: Tensor) -> Tensor:
    """(B*K,1,S,S) float binary targets of image-major (image, class) queries: label maps (B,S,S),
    cls (B*K,) the class id of each query."""
    k = cls.shape[0] // label_map.shape[0]
    return (label_map.repeat_interleave(k, dim=0) == cls[:, None, None]).unsqueeze(1).float()
