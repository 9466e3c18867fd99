"""PyTorch references of the pretraining arithmetic, for tests/unit/test_pretrain_golden.cpp.

Usage: pretrain_reference.py OUT.safetensors

Writes seeded inputs and the outputs the official code computes from them, transcribed from
facebookresearch/dino (main_dino.py DINOLoss, utils.cosine_scheduler, the EMA update of train_one_epoch,
vision_transformer.DINOHead) and facebookresearch/mae (models_mae.py forward_loss, random_masking), plus
torch.optim.AdamW itself. Scalars the C++ side needs go into the metadata. Written from those sources, not
from vitprobe's C++, so the two check each other.
"""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, __import__("os").path.dirname(__file__))
from reference_vit import write_safetensors  # noqa: E402


class DINOLoss(nn.Module):
    """main_dino.py DINOLoss, single process (world size 1)."""

    def __init__(self, out_dim, ncrops, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs,
                 student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.ncrops = ncrops
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temp_schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp))

    def forward(self, student_output, teacher_output, epoch):
        student_out = student_output / self.student_temp
        student_out = student_out.chunk(self.ncrops)
        temp = self.teacher_temp_schedule[epoch]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1)
        teacher_out = teacher_out.detach().chunk(2)
        total_loss = 0
        n_loss_terms = 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


def cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    """utils.cosine_scheduler of DINO."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup_schedule, schedule))


class DINOHead(nn.Module):
    """vision_transformer.DINOHead with nlayers=3, use_bn=False, norm_last_layer=True."""

    def __init__(self, in_dim, out_dim, hidden_dim, bottleneck_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = nn.functional.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


def mae_forward_loss(target, pred, mask, norm_pix_loss=True):
    """models_mae.py forward_loss on already patchified targets."""
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.e-6) ** .5
    loss = (pred - target) ** 2
    loss = loss.mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def main(out_path):
    generator = torch.Generator().manual_seed(1234)
    tensors, metadata = {}, {}

    # DINO loss, centering and the teacher temperature schedule: 4 crops (2 global) of batch 3, 16 prototypes.
    batch, crops, out_dim = 3, 4, 16
    nepochs, warmup_epochs, epoch = 10, 4, 2
    student = torch.randn(crops * batch, out_dim, generator=generator) * 3
    teacher = torch.randn(2 * batch, out_dim, generator=generator) * 3
    center = torch.randn(1, out_dim, generator=generator) * 0.5
    criterion = DINOLoss(out_dim, crops, 0.04, 0.07, warmup_epochs, nepochs)
    criterion.center = center.clone()
    loss = criterion(student, teacher, epoch)
    tensors.update({"dino.student": student, "dino.teacher": teacher, "dino.center": center,
                    "dino.loss": loss.reshape(1), "dino.new_center": criterion.center,
                    "dino.temperatures": torch.tensor(criterion.teacher_temp_schedule, dtype=torch.float64)})
    metadata.update({"dino.crops": str(crops), "dino.epoch": str(epoch), "dino.nepochs": str(nepochs),
                     "dino.warmup_epochs": str(warmup_epochs), "dino.warmup_temp": "0.04",
                     "dino.teacher_temp": "0.07", "dino.student_temp": "0.1", "dino.center_momentum": "0.9"})

    # Schedules: teacher momentum 0.996 -> 1 and lr with warm-up, per iteration.
    momentum = cosine_scheduler(0.996, 1, 5, 7)
    lr = cosine_scheduler(1e-3, 1e-6, 5, 7, warmup_epochs=2)
    tensors["schedule.momentum"] = torch.tensor(momentum, dtype=torch.float64)
    tensors["schedule.lr"] = torch.tensor(lr, dtype=torch.float64)
    metadata.update({"schedule.epochs": "5", "schedule.iterations_per_epoch": "7", "schedule.warmup_epochs": "2"})

    # EMA of the teacher: param_k.data.mul_(m).add_((1 - m) * param_q.detach().data).
    teacher_weights = torch.randn(5, 7, generator=generator)
    student_weights = torch.randn(5, 7, generator=generator)
    m = float(momentum[9])
    ema = teacher_weights.clone().mul_(m).add_((1 - m) * student_weights)
    tensors.update({"ema.teacher": teacher_weights, "ema.student": student_weights, "ema.result": ema})
    metadata["ema.momentum"] = repr(m)

    # DINO head forward (weight-normalised last layer with g = 1).
    torch.manual_seed(7)
    head = DINOHead(12, 10, 20, 8)
    features = torch.randn(4, 12, generator=generator)
    with torch.no_grad():
        logits = head(features)
    for key, value in head.state_dict().items():
        tensors["head." + key] = value
    tensors.update({"head.features": features, "head.logits": logits})

    # AdamW: three steps with given gradients, one tensor decayed and one not (as the parameter groups).
    decayed = torch.randn(4, 3, generator=generator)
    not_decayed = torch.randn(3, generator=generator)
    grads = [(torch.randn(4, 3, generator=generator), torch.randn(3, generator=generator)) for _ in range(3)]
    params = [decayed.clone().requires_grad_(), not_decayed.clone().requires_grad_()]
    optimizer = torch.optim.AdamW([{"params": [params[0]], "weight_decay": 0.05},
                                   {"params": [params[1]], "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.95))
    lrs = [1e-2, 5e-3, 2e-3]
    for step, (grad_a, grad_b) in enumerate(grads):
        for group in optimizer.param_groups:
            group["lr"] = lrs[step]
        params[0].grad, params[1].grad = grad_a.clone(), grad_b.clone()
        optimizer.step()
        tensors[f"adamw.grad_a.{step}"] = grad_a
        tensors[f"adamw.grad_b.{step}"] = grad_b
    tensors.update({"adamw.a": decayed, "adamw.b": not_decayed, "adamw.a_after": params[0].detach(),
                    "adamw.b_after": params[1].detach()})
    metadata.update({"adamw.lrs": ",".join(repr(v) for v in lrs), "adamw.weight_decay": "0.05",
                     "adamw.beta2": "0.95"})

    # MAE loss with norm_pix_loss on random patches.
    target = torch.rand(2, 6, 12, generator=generator)
    pred = torch.randn(2, 6, 12, generator=generator)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 1, 1]], dtype=torch.float32)
    tensors.update({"mae.target": target, "mae.pred": pred, "mae.mask": mask,
                    "mae.loss": mae_forward_loss(target, pred, mask).reshape(1),
                    "mae.loss_raw": mae_forward_loss(target, pred, mask, norm_pix_loss=False).reshape(1)})

    write_safetensors(out_path, {k: v.contiguous() for k, v in tensors.items()}, metadata)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: pretrain_reference.py OUT.safetensors")
    main(sys.argv[1])
