"""Shared pieces of the pretraining references (bench/dino_reference.py, bench/mae_reference.py).

Fashion-MNIST from Debian's dataset-fashion-mnist, the small ViT of the bundled encoders built with timm, the
weighted k-NN of DINO's eval_knn.py, and a safetensors writer/reader with timm's key names, so an encoder saved
by `vitprobe pretrain` and one trained here are evaluated by the same code.
"""
import gzip
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (gzip or raw) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(split, directory=FASHION_MNIST_DIR):
    """(images uint8 (N, 28, 28), labels int64 (N,)) of the train or test split."""
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    return images, labels


def balanced_subset(labels, limit, seed):
    """Indices of a class-balanced subset of `limit` items (all when limit is 0), in a seeded order."""
    if limit <= 0 or limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    # limit // C per class, one more for the first limit % C classes (as vitprobe's --limit counts them)
    counts = [limit // len(classes) + (1 if i < limit % len(classes) else 0) for i in range(len(classes))]
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, counts)]
    return np.sort(np.concatenate(chosen))


def measured_mean_std(images, labels, seed):
    """vitprobe pretrain's default normalisation: mean and std of the pixels of a class-balanced 10,000-image
    sample of the training images (grey: one value for R, G and B)."""
    sample = images[balanced_subset(labels, 10000, seed)].astype(np.float64) / 255.0
    return float(sample.mean()), float(sample.std())


def training_images(args):
    """Seeds Python, numpy and torch with args.seed, sets args.threads, and returns the training images of
    `vitprobe pretrain --data fashion-mnist --limit N --seed S` with the mean/std it measures."""
    import random
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    images, labels = fashion_mnist("train")
    keep = balanced_subset(labels, args.limit, args.seed)
    mean, std = measured_mean_std(images[keep], labels[keep], args.seed)
    return images[keep], mean, std


class ImageDataset(torch.utils.data.Dataset):
    """Grey uint8 images as RGB PIL images through a transform (one view or a list of crops per item)."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[index]).convert("RGB"))


def small_vit(img_size=28, patch_size=4, embed_dim=192, depth=6, num_heads=3, mlp_ratio=4.0):
    """The bundled encoders' architecture as timm's VisionTransformer ([cls] out after the final norm); local
    crops of other sizes get a bicubic resample of the position table (dynamic_img_size)."""
    import functools

    import timm.layers
    import timm.models.vision_transformer as vit
    # Local crops: the position table resampled bicubically to the crop's grid without antialiasing, as DINO's
    # interpolate_pos_encoding and vitprobe do (timm antialiases by default, which smooths the 7 -> 3 table).
    vit.resample_abs_pos_embed = functools.partial(timm.layers.resample_abs_pos_embed, antialias=False)
    return vit.VisionTransformer(img_size=img_size, patch_size=patch_size, in_chans=3, num_classes=0,
                                 embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                 qkv_bias=True, global_pool="token", dynamic_img_size=True)


def save_encoder(model, path, metadata):
    """timm's state dict as a safetensors file (fp32, keys as timm names them), written atomically."""
    from safetensors.torch import save_file
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tmp = path + ".tmp"
    save_file(state, tmp, metadata={k: json.dumps(v) if not isinstance(v, str) else v for k, v in metadata.items()})
    os.replace(tmp, path)


def load_encoder(path, **shape):
    """A timm ViT from a safetensors file with timm keys (vitprobe's `pretrain` output or save_encoder's)."""
    from safetensors.torch import load_file
    model = small_vit(**shape)
    state = load_file(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing}, unexpected {unexpected}")
    return model


def encoder_mean_std(path):
    """The normalisation an encoder was trained with (metadata "mean"/"std": "R,G,B"; grey data: R = G = B)."""
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
    if "mean" not in metadata or "std" not in metadata:
        raise SystemExit(f"{path}: no mean/std in the metadata")
    return float(metadata["mean"].split(",")[0]), float(metadata["std"].split(",")[0])


def to_input(images_u8, mean, std):
    """uint8 (N, 28, 28) -> normalised float (N, 3, 28, 28)."""
    x = torch.from_numpy(images_u8.copy()).float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    return (x - mean) / std


@torch.no_grad()
def features(model, images_u8, mean, std, batch=500):
    """[cls] (after the final norm) and the mean of the patch tokens (after the final norm) of every image."""
    model.eval()
    cls, mean_tokens = [], []
    for start in range(0, len(images_u8), batch):
        tokens = model.forward_features(to_input(images_u8[start:start + batch], mean, std))
        cls.append(tokens[:, 0])
        mean_tokens.append(tokens[:, model.num_prefix_tokens:].mean(1))
    return torch.cat(cls), torch.cat(mean_tokens)


@torch.no_grad()
def knn_top1(train_features, train_labels, test_features, test_labels, k=20, temperature=0.07, num_classes=10):
    """eval_knn.py's weighted k-NN: cosine similarity, the k nearest vote with exp(sim / T); top-1 in %."""
    train = F.normalize(train_features, dim=1)
    test = F.normalize(test_features, dim=1)
    train_labels = torch.as_tensor(train_labels)
    correct = 0
    for start in range(0, len(test), 500):
        similarity = test[start:start + 500] @ train.T
        values, indices = similarity.topk(k, dim=1)
        votes = torch.zeros(len(values), num_classes)
        votes.scatter_add_(1, train_labels[indices], (values / temperature).exp())
        correct += (votes.argmax(1) == torch.as_tensor(test_labels[start:start + 500])).sum().item()
    return 100.0 * correct / len(test)


def evaluate_knn(model, mean, std, train_limit=0, test_limit=0, seed=0):
    """k-NN top-1 of [cls] and of mean-pooled patch tokens: memory = the train split (or a balanced subset),
    queries = the test split (or its first test_limit images)."""
    train_images, train_labels = fashion_mnist("train")
    test_images, test_labels = fashion_mnist("test")
    keep = balanced_subset(train_labels, train_limit, seed)
    train_images, train_labels = train_images[keep], train_labels[keep]
    if test_limit > 0:
        test_images, test_labels = test_images[:test_limit], test_labels[:test_limit]
    train_cls, train_mean = features(model, train_images, mean, std)
    test_cls, test_mean = features(model, test_images, mean, std)
    return {"cls": knn_top1(train_cls, train_labels, test_cls, test_labels),
            "mean": knn_top1(train_mean, train_labels, test_mean, test_labels),
            "train_items": int(len(train_labels)), "test_items": int(len(test_labels))}


def add_run_arguments(train_parser, eval_parser=None):
    """The options both references share: vitprobe pretrain's data, schedule and seed flags (same names and
    defaults) on `train`; threads, loader workers, k-NN sizes and the output file on both subcommands."""
    t = train_parser
    t.add_argument("--limit", type=int, default=0)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--steps", type=int, default=0, help="stop after N steps (0: all)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--warmup-epochs", type=float, default=1.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--img-size", type=int, default=28)
    t.add_argument("--save", default="", help="write the trained encoder here (safetensors, timm keys)")
    t.add_argument("--print-every", type=int, default=20)
    for p in (t, eval_parser) if eval_parser is not None else (t,):
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--workers", type=int, default=0)
        p.add_argument("--knn-train", type=int, default=0, help="balanced subset of the train split as memory (0: all)")
        p.add_argument("--knn-test", type=int, default=0, help="first N test images as queries (0: all 10,000)")
        p.add_argument("--out", required=True)


def write_json(result, path):
    """The run's JSON, written atomically (a temporary beside it, then renamed)."""
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(path + ".tmp", path)
