"""MAE in PyTorch as the official code trains it, on the data and with the options of `vitprobe pretrain mae`.

Written from facebookresearch/mae (models_mae.py: MaskedAutoencoderViT, random_masking, forward_loss with
norm_pix_loss; main_pretrain.py: RandomResizedCrop(scale 0.2-1, bicubic) + flip, AdamW(0.9, 0.95) with no decay on
biases and norms, lr = blr * batch / 256; util/lr_sched.py: linear warm-up then half-cycle cosine per iteration;
util/pos_embed.py: fixed 2-D sin-cos position tables), not from vitprobe's C++. Blocks are timm's, so the encoder
saves with timm's keys.

  train:  mae_reference.py train --steps N [vitprobe's mae options] --out run.json [--save enc.safetensors]
  eval:   dino_reference.py eval ENCODER.safetensors (the same k-NN evaluator)
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pretrain_common as common  # noqa: E402


def sincos_2d(embed_dim, grid_size, cls_token):
    """util/pos_embed.py get_2d_sincos_pos_embed: half the channels encode the row... as the official code orders
    them (w first, then h), 10000^(-2i/D) frequencies; a zero row for [cls] in front."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid_size, grid_size)

    def one_d(dim, pos):
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    table = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        table = np.concatenate([np.zeros([1, embed_dim]), table], axis=0)
    return torch.from_numpy(table).float().unsqueeze(0)


class MaskedAutoencoderViT(nn.Module):
    def __init__(self, img_size=28, patch_size=4, embed_dim=192, depth=6, num_heads=3, decoder_embed_dim=128,
                 decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0, norm_pix_loss=True):
        super().__init__()
        from functools import partial

        from timm.models.vision_transformer import Block, PatchEmbed
        norm = partial(nn.LayerNorm, eps=1e-6)  # models_mae.py's norm_layer
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm) for _ in range(depth)])
        self.norm = norm(embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                             for _ in range(decoder_depth)])
        self.decoder_norm = norm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * 3, bias=True)
        self.norm_pix_loss = norm_pix_loss
        self.initialize_weights()

    def initialize_weights(self):
        grid = int(self.patch_embed.num_patches ** 0.5)
        self.pos_embed.data.copy_(sincos_2d(self.pos_embed.shape[-1], grid, True))
        self.decoder_pos_embed.data.copy_(sincos_2d(self.decoder_pos_embed.shape[-1], grid, True))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def patchify(self, imgs):
        p = self.patch_size
        h = w = imgs.shape[2] // p
        x = imgs.reshape(imgs.shape[0], 3, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(imgs.shape[0], h * w, p ** 2 * 3)

    def random_masking(self, x, mask_ratio):
        n, length, dim = x.shape
        len_keep = int(length * (1 - mask_ratio))
        noise = torch.rand(n, length)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, dim))
        mask = torch.ones([n, length])
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, x, mask_ratio):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:, :]

    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6) ** .5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs, mask_ratio):
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio)
        return self.forward_loss(imgs, self.forward_decoder(latent, ids_restore), mask)

    def encoder_state(self):
        """The encoder's tensors under timm VisionTransformer's names."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("decoder", "mask_token"))}


def adjust_learning_rate(optimizer, epoch, args, base_lr):
    """util/lr_sched.py: epoch is fractional (iteration / iterations per epoch)."""
    if epoch < args.warmup_epochs:
        lr = base_lr * epoch / args.warmup_epochs
    else:
        lr = args.min_lr + (base_lr - args.min_lr) * 0.5 * (
            1. + math.cos(math.pi * (epoch - args.warmup_epochs) / (args.epochs - args.warmup_epochs)))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def train(args):
    images, mean, std = common.training_images(args)
    transform = transforms.Compose([
        transforms.RandomResizedCrop(args.img_size, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize([mean] * 3, [std] * 3)])
    loader = torch.utils.data.DataLoader(common.ImageDataset(images, transform), batch_size=args.batch_size, shuffle=True,
                                         drop_last=True, num_workers=args.workers,
                                         generator=torch.Generator().manual_seed(args.seed))
    model = MaskedAutoencoderViT(norm_pix_loss=True, decoder_embed_dim=args.decoder_dim, decoder_depth=args.decoder_depth,
                                 decoder_num_heads=args.decoder_heads)
    # optim_factory.param_groups_weight_decay: no decay on 1-D tensors and biases.
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1 and not n.endswith(".bias")]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and (p.ndim <= 1 or n.endswith(".bias"))]
    optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.05}],
                                  betas=(0.9, 0.95))
    base_lr = args.blr * args.batch_size / 256
    niter = len(loader)
    steps = min(args.steps or args.epochs * niter, args.epochs * niter)
    log = {"step_losses": []}
    start, it = time.time(), 0
    for epoch in range(args.epochs):
        model.train()
        for i, samples in enumerate(loader):
            if it >= steps:
                break
            adjust_learning_rate(optimizer, i / niter + epoch, args, base_lr)
            loss = model(samples, args.mask_ratio)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            log["step_losses"].append(loss.item())
            it += 1
            if it % args.print_every == 0:
                print(f"step {it}/{steps} loss {np.mean(log['step_losses'][-args.print_every:]):.4f} "
                      f"{time.time() - start:.0f}s", file=sys.stderr, flush=True)
        if it >= steps:
            break
    log.update(wall_s=time.time() - start, steps=it, mean=mean, std=std, options=vars(args))
    encoder = common.small_vit()
    missing, unexpected = encoder.load_state_dict(model.encoder_state(), strict=False)
    if missing or unexpected:
        raise SystemExit(f"encoder keys: missing {missing}, unexpected {unexpected}")
    if args.save:
        common.save_encoder(encoder, args.save, {"reference": "bench/mae_reference.py", "steps": str(it),
                                                 "mean": f"{mean},{mean},{mean}", "std": f"{std},{std},{std}"})
    log["knn"] = common.evaluate_knn(encoder, mean, std, args.knn_train, args.knn_test)
    print(json.dumps(log["knn"]), file=sys.stderr)
    return log


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    common.add_run_arguments(t)
    t.add_argument("--blr", type=float, default=1.5e-4)
    t.add_argument("--min-lr", type=float, default=0.0)
    t.add_argument("--mask-ratio", type=float, default=0.75)
    t.add_argument("--decoder-dim", type=int, default=128)
    t.add_argument("--decoder-depth", type=int, default=2)
    t.add_argument("--decoder-heads", type=int, default=4)
    args = parser.parse_args()
    common.write_json(train(args), args.out)


if __name__ == "__main__":
    main()
