"""Train a small Qwen2-family causal LM on the Python standard library's own sources, for generation checks.

Random-init weights give near-uniform logits (top-1 margins of 1e-5, below float32 noise), where
equal greedy tokens prove nothing. A few minutes of training on text that exists offline gives a
model whose greedy continuations are peaked and meaningful, and held-out text for perplexity-style
gates. Deterministic: files in sorted order, every 10th file held out, fixed seeds, a fixed number of
steps. The folder (a normal transformers folder with a byte-level tokenizer.json) is cached outside
git, by default in ~/.cache/torch2ort/stdlib-lm; nothing is downloaded.

    nice -n 5 .venv/bin/python benchmarks/train_tiny_lm.py [--steps 400] [--out DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.decoders import EOS, byte_tokenizer  # noqa: E402

DEFAULT_OUT = Path.home() / ".cache" / "torch2ort" / "stdlib-lm"
# Small enough to train in minutes on two shared CPU cores; 2048 positions so benchmarks reach 1,024 tokens.
CONFIG = dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=256, max_position_embeddings=2048, tie_word_embeddings=True)
PROMPTS = ["def __init__(self", "import os", "    for i in range(", "class Error(Exception):", "    return ",
           "# Copyright"]  # one line each: prompts.txt holds one per line


def corpus(max_bytes: int = 6_000_000) -> tuple[bytes, bytes, list[str]]:
    """(train bytes, held-out bytes, the files used): stdlib .py files in sorted order, every 10th held out."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "test" not in p.parts and "site-packages" not in p.parts)
    train, held, used = bytearray(), bytearray(), []
    for i, path in enumerate(files):
        data = path.read_bytes()
        (held if i % 10 == 9 else train).extend(data + bytes([0x0A]))
        used.append(str(path.relative_to(stdlib)))
        if len(train) >= max_bytes:
            break
    return bytes(train), bytes(held[:400_000]), used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    if (args.out / "config.json").is_file() and not args.force:
        print(f"{args.out} exists (pass --force to train again)")
        return 0
    import numpy as np
    import torch
    import transformers

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train, held, files = corpus()
    data = torch.from_numpy(np.frombuffer(train, dtype=np.uint8).astype(np.int64))
    args.out.mkdir(parents=True, exist_ok=True)
    vocab = byte_tokenizer(args.out / "tokenizer.json")
    from tokenizers import Tokenizer

    sample = train[:4096].decode("utf-8", errors="ignore").encode("utf-8")
    if Tokenizer.from_file(str(args.out / "tokenizer.json")).encode(sample.decode()).ids != list(sample):
        raise SystemExit("the tokenizer's ids are not the bytes the model is trained on")
    config = transformers.Qwen2Config(vocab_size=vocab, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=EOS,
                                      **CONFIG)
    model = transformers.Qwen2ForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(0)
    start, losses = time.perf_counter(), []
    model.train()
    for step in range(args.steps):
        at = torch.randint(0, len(data) - args.seq - 1, (args.batch,), generator=gen)
        x = torch.stack([data[i:i + args.seq] for i in at])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step}: loss {np.mean(losses[-100:]):.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    model.eval()
    held_ids = torch.from_numpy(np.frombuffer(held, dtype=np.uint8).astype(np.int64))
    with torch.inference_mode():
        chunks = held_ids[: (len(held_ids) // 256) * 256].view(-1, 256)[:64]
        held_loss = float(model(input_ids=chunks, labels=chunks).loss)
    model.generation_config.pad_token_id = EOS
    model.save_pretrained(args.out)
    (args.out / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    (args.out / "heldout.txt").write_bytes(held)
    info = {"steps": args.steps, "batch": args.batch, "seq": args.seq, "seconds": round(time.perf_counter() - start),
            "final_train_loss": round(float(np.mean(losses[-100:])), 4), "heldout_loss": round(held_loss, 4),
            "heldout_bits_per_byte": round(held_loss / np.log(2), 4), "train_bytes": len(train),
            "files": len(files), "python": sys.version.split()[0], "torch": torch.__version__,
            "transformers": transformers.__version__, "config": CONFIG}
    (args.out / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
