"""gpu: `vitprobe pretrain` on CUDA against CPU: MAE and DINO, a tiny ViT on 64 Fashion-MNIST images, one epoch
of 2 steps (batch 32), seed 0, fp32.

Same seed, hence the same initial weights, data order, masks and crops (vitprobe draws them from seeded CPU
generators whatever the device): the epoch loss within 1e-3 + 1% of the CPU's, and the saved
encoders' tensors within 1e-3 of each other (two AdamW steps of learning rate ~1e-4 move each weight by about
2e-4: a tensor off by more than that took another step). The loss must be finite and positive.
"""
import json

import numpy as np

from gpu_common import compare_numbers, fashion_mnist, main, run_on, work_dir
from harness import read_safetensors

TINY = ["--limit", "64", "--batch-size", "32", "--epochs", "1", "--embed-dim", "64", "--depth", "2", "--num-heads", "2",
        "--seed", "0", "--precision", "fp32", "--threads", "4", "--quiet", "--json"]
OBJECTIVES = {"mae": ["--decoder-dim", "32", "--decoder-depth", "1"], "dino": ["--out-dim", "256", "--local-crops", "2"]}


def check(report):
    work = work_dir(fresh=True)
    for objective, extra in OBJECTIVES.items():
        summaries, encoders = {}, {}
        for device in ("cpu", "cuda"):
            encoders[device] = work / f"{objective}-{device}.safetensors"
            result = run_on(report, objective, device, ["pretrain", objective, "--data", fashion_mnist(), "--out",
                                                        encoders[device]] + TINY + extra)
            if result is None:
                break
            summaries[device] = json.loads(result.stdout)
        if len(summaries) < 2:
            continue
        loss = summaries["cuda"]["epoch_losses"]
        report.check(objective, "loss finite and positive on cuda", bool(np.isfinite(loss).all() and min(loss) > 0), loss)
        compare_numbers(report, objective, "epoch loss", summaries["cpu"]["epoch_losses"], loss, 1e-3, 1e-2)
        cpu, cuda = read_safetensors(encoders["cpu"]), read_safetensors(encoders["cuda"])
        report.check(objective, "same encoder tensors", sorted(cpu) == sorted(cuda), len(cuda), len(cpu))
        worst = max((float(np.abs(cpu[k] - cuda[k]).max()), k) for k in set(cpu) & set(cuda))
        report.check(objective, "encoder tensors after 2 steps: max |cuda - cpu|", worst[0] <= 1e-3,
                     f"{worst[0]:.1e} ({worst[1]})", 1e-3)


if __name__ == "__main__":
    main("gpu: pretrain (MAE, DINO), cuda vs cpu", check)
