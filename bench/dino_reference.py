"""DINO in PyTorch as the official code trains it, on the data and with the options of `vitprobe pretrain dino`.

Written from facebookresearch/dino (main_dino.py: DataAugmentationDINO, DINOLoss, train_one_epoch,
MultiCropWrapper; utils.py: cosine_scheduler, get_params_groups, clip_gradients, cancel_gradients_last_layer;
vision_transformer.py: DINOHead), not from vitprobe's C++. The backbone is timm's VisionTransformer of the bundled
encoders' size. Two uses:

  train:  dino_reference.py train --steps N [vitprobe's dino options] --out run.json [--save enc.safetensors]
          trains for N steps with schedules spanning --epochs, logs every step's loss, then k-NN of the teacher.
  eval:   dino_reference.py eval ENCODER.safetensors --out eval.json
          k-NN of any encoder with timm keys (what `vitprobe pretrain` writes), by the same evaluator.

Adaptations to 28-px images, shared with vitprobe (which does the same): the Gaussian blur radius is scaled by
crop size / 224; colour jitter has no hue term (grey images: a no-op); the local crop side is 12 px (3x3 patches);
images are normalised by the mean/std measured on the training data (official: ImageNet's); the position table
is resampled to a local crop's grid by size (official: by scale factor (w0 + 0.1) / sqrt(N)), without antialias.
Deviations of vitprobe's defaults from main_dino.py's, shared here: no stochastic depth (official
drop_path_rate 0.1), 4,096 prototypes (65,536), 6 local crops (8), 1 warm-up epoch (10).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import ImageFilter, ImageOps
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pretrain_common as common  # noqa: E402


# --- augmentation (main_dino.py DataAugmentationDINO, utils.GaussianBlur / Solarization) -------------------------

class GaussianBlur:
    def __init__(self, p, size, radius_min=0.1, radius_max=2.0):
        self.p, self.scale, self.radius_min, self.radius_max = p, size / 224.0, radius_min, radius_max

    def __call__(self, img):
        if random.random() > self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max) * self.scale))


class Solarization:
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if random.random() < self.p else img


class DataAugmentationDINO:
    def __init__(self, global_scale, local_scale, local_crops, size, local_size, mean, std):
        flip_and_color_jitter = transforms.Compose([
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.RandomApply([transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
        ])
        normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        bicubic = transforms.InterpolationMode.BICUBIC
        self.global1 = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=global_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(1.0, size), normalize])
        self.global2 = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=global_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(0.1, size), Solarization(0.2), normalize])
        self.local_crops = local_crops
        self.local = transforms.Compose([
            transforms.RandomResizedCrop(local_size, scale=local_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(0.5, local_size), normalize])

    def __call__(self, image):
        return [self.global1(image), self.global2(image)] + [self.local(image) for _ in range(self.local_crops)]


# --- model (vision_transformer.py DINOHead, main_dino.py MultiCropWrapper) ---------------------------------------

def trunc_normal_(tensor, std):
    return nn.init.trunc_normal_(tensor, std=std, a=-2.0, b=2.0)


class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, hidden_dim, bottleneck_dim, norm_last_layer=True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, 0.02)
                nn.init.constant_(m.bias, 0)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class MultiCropWrapper(nn.Module):
    """Runs the backbone once per run of same-resolution crops, the head once on all [cls] outputs."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops):
        sizes = torch.tensor([c.shape[-1] for c in crops])
        ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0)
        outputs, start = [], 0
        for end in ends.tolist():
            outputs.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(outputs))


def dino_backbone():
    model = common.small_vit()
    # vision_transformer.py: trunc_normal(0.02) for pos_embed, cls_token and every Linear (timm: cls 1e-6).
    trunc_normal_(model.cls_token, 0.02)
    return model


# --- loss and schedules (main_dino.py DINOLoss, utils.cosine_scheduler) -------------------------------------------

class DINOLoss(nn.Module):
    def __init__(self, out_dim, ncrops, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs, nepochs,
                 student_temp, center_momentum):
        super().__init__()
        self.student_temp, self.center_momentum, self.ncrops = student_temp, center_momentum, ncrops
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.teacher_temp_schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(max(0, nepochs - warmup_teacher_temp_epochs)) * teacher_temp))

    def forward(self, student_output, teacher_output, epoch):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        temp = self.teacher_temp_schedule[epoch]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(2)
        total, n_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                total += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_terms += 1
        total /= n_terms
        entropy = -(torch.cat(teacher_out) * torch.log(torch.cat(teacher_out).clamp_min(1e-30))).sum(-1).mean().item()
        self.update_center(teacher_output)
        return total, entropy

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


def cosine_scheduler(base_value, final_value, total_iters, warmup_iters=0, start_warmup_value=0):
    warmup = np.linspace(start_warmup_value, base_value, warmup_iters) if warmup_iters > 0 else np.array([])
    iters = np.arange(total_iters - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup, schedule))


def get_params_groups(model):
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (not_regularized if name.endswith(".bias") or len(param.shape) == 1 else regularized).append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]


def clip_gradients(model, clip):
    for p in model.parameters():
        if p.grad is not None:
            clip_coef = clip / (p.grad.data.norm(2).item() + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def cancel_gradients_last_layer(epoch, model, freeze_last_layer):
    if epoch >= freeze_last_layer:
        return
    for n, p in model.named_parameters():
        if "last_layer" in n:
            p.grad = None


# --- training ---------------------------------------------------------------------------------------------------

def train(args):
    images, mean, std = common.training_images(args)
    local_size = args.local_crop_size or max(args.patch_size, round(args.img_size * 96 / 224 / args.patch_size) * args.patch_size)
    augmentation = DataAugmentationDINO((args.global_scale_min, 1.0), (args.local_scale_min, args.local_scale_max),
                                        args.local_crops, args.img_size, local_size, [mean] * 3, [std] * 3)
    loader = torch.utils.data.DataLoader(common.ImageDataset(images, augmentation), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, num_workers=args.workers,
                                         generator=torch.Generator().manual_seed(args.seed))
    student = MultiCropWrapper(dino_backbone(), DINOHead(192, args.out_dim, args.head_hidden_dim, args.bottleneck_dim))
    teacher = MultiCropWrapper(dino_backbone(), DINOHead(192, args.out_dim, args.head_hidden_dim, args.bottleneck_dim))
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    ncrops = 2 + args.local_crops
    loss_fn = DINOLoss(args.out_dim, ncrops, args.warmup_teacher_temp, args.teacher_temp,
                       args.warmup_teacher_temp_epochs, args.epochs, args.student_temp, args.center_momentum)
    optimizer = torch.optim.AdamW(get_params_groups(student))
    niter = len(loader)
    total = args.epochs * niter
    lr_schedule = cosine_scheduler(args.blr * args.batch_size / 256, args.min_lr, total, int(args.warmup_epochs * niter))
    wd_schedule = cosine_scheduler(args.weight_decay, args.weight_decay_end, total)
    momentum_schedule = cosine_scheduler(args.momentum_teacher, 1, total)
    steps = min(args.steps or total, total)
    log = {"step_losses": [], "teacher_entropy": [], "lr": []}
    start = time.time()
    it = 0
    for epoch in range(args.epochs):
        student.train()
        for crops in loader:
            if it >= steps:
                break
            for i, group in enumerate(optimizer.param_groups):
                group["lr"] = lr_schedule[it]
                if i == 0:
                    group["weight_decay"] = wd_schedule[it]
            teacher_output = teacher(crops[:2])
            student_output = student(crops)
            loss, entropy = loss_fn(student_output, teacher_output, epoch)
            if not math.isfinite(loss.item()):
                raise SystemExit(f"loss is {loss.item()} at step {it}")
            optimizer.zero_grad()
            loss.backward()
            if args.clip_grad > 0:
                clip_gradients(student, args.clip_grad)
            cancel_gradients_last_layer(epoch, student, args.freeze_last_layer)
            optimizer.step()
            with torch.no_grad():
                m = momentum_schedule[it]
                for param_q, param_k in zip(student.parameters(), teacher.parameters()):
                    param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
            log["step_losses"].append(loss.item())
            log["teacher_entropy"].append(entropy)
            log["lr"].append(float(lr_schedule[it]))
            it += 1
            if it % args.print_every == 0:
                recent = np.mean(log["step_losses"][-args.print_every:])
                print(f"step {it}/{steps} loss {recent:.4f} entropy {entropy:.3f} {time.time() - start:.0f}s",
                      file=sys.stderr, flush=True)
        if it >= steps:
            break
    log["wall_s"] = time.time() - start
    log["steps"] = it
    log["mean"], log["std"] = mean, std
    log["options"] = vars(args)
    if args.save:
        common.save_encoder(teacher.backbone, args.save, {"reference": "bench/dino_reference.py", "steps": str(it),
                                                          "mean": f"{mean},{mean},{mean}", "std": f"{std},{std},{std}"})
    log["knn"] = common.evaluate_knn(teacher.backbone, mean, std, args.knn_train, args.knn_test)
    print(json.dumps(log["knn"]), file=sys.stderr)
    return log


def evaluate(args):
    torch.set_num_threads(args.threads)
    mean, std = common.encoder_mean_std(args.encoder)
    model = common.load_encoder(args.encoder)
    return {"encoder": args.encoder, "knn": common.evaluate_knn(model, mean, std, args.knn_train, args.knn_test)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    # The options and defaults of `vitprobe pretrain dino` (same names).
    t.add_argument("--patch-size", type=int, default=4)
    t.add_argument("--out-dim", type=int, default=4096)
    t.add_argument("--head-hidden-dim", type=int, default=2048)
    t.add_argument("--bottleneck-dim", type=int, default=256)
    t.add_argument("--momentum-teacher", type=float, default=0.996)
    t.add_argument("--warmup-teacher-temp", type=float, default=0.04)
    t.add_argument("--teacher-temp", type=float, default=0.04)
    t.add_argument("--warmup-teacher-temp-epochs", type=int, default=0)
    t.add_argument("--student-temp", type=float, default=0.1)
    t.add_argument("--center-momentum", type=float, default=0.9)
    t.add_argument("--local-crops", type=int, default=6)
    t.add_argument("--local-crop-size", type=int, default=0)
    t.add_argument("--global-scale-min", type=float, default=0.4)
    t.add_argument("--local-scale-min", type=float, default=0.05)
    t.add_argument("--local-scale-max", type=float, default=0.4)
    t.add_argument("--blr", type=float, default=5e-4)
    t.add_argument("--min-lr", type=float, default=1e-6)
    t.add_argument("--weight-decay", type=float, default=0.04)
    t.add_argument("--weight-decay-end", type=float, default=0.4)
    t.add_argument("--clip-grad", type=float, default=3.0)
    t.add_argument("--freeze-last-layer", type=int, default=1)
    e = sub.add_parser("eval")
    common.add_run_arguments(t, e)
    e.add_argument("encoder")
    args = parser.parse_args()
    common.write_json(train(args) if args.command == "train" else evaluate(args), args.out)


if __name__ == "__main__":
    main()
