"""``dynofa train``: train a super-network with the sandwich rule and in-place distillation."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

# Sleeping (not spinning) OpenMP workers: on a shared 2-core machine a spinning team stalls
# whenever another process takes a core (steps 2x slower, measured here). It must be set before
# torch is first imported, which in the `dynofa train` process happens just below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dynofa_ros.supernet.network import PRESETS, preset


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dynofa train",
        description="Train an elastic super-network (OFA-MobileNetV3 or ViT, by --preset) with "
        "the sandwich rule (largest, smallest and N random sub-networks per step, in-place "
        "distillation from the largest). Writes a safetensors checkpoint with the BN statistics "
        "(MobileNetV3) and accuracies of the reported "
        "sub-networks, a resumable state file and a JSON-lines log beside it.",
    )
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.safetensors)")
    p.add_argument(
        "--preset",
        default="fmnist-small",
        choices=sorted(PRESETS),
        help="super-network architecture (default: fmnist-small)",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--fashion-mnist",
        metavar="DIR",
        type=Path,
        default=Path("/usr/share/datasets/fashion-mnist"),
        help="folder with Fashion-MNIST IDX files, gzipped or not (default: %(default)s)",
    )
    data.add_argument(
        "--idx",
        nargs=4,
        metavar=("TRAIN_IMAGES", "TRAIN_LABELS", "TEST_IMAGES", "TEST_LABELS"),
        type=Path,
        help="any IDX image / label files (TEST_* may be '-' for none)",
    )
    data.add_argument(
        "--image-folder",
        metavar="DIR",
        type=Path,
        help="ImageFolder tree DIR/train/<class>/*.png (and optional DIR/test/...)",
    )
    p.add_argument("--labels", help="comma-separated class names (IDX data; default: digits)")
    p.add_argument(
        "--val-size",
        type=int,
        default=5000,
        help="validation images carved (fixed split) from the training set",
    )
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use only the first N training images (quick trials)",
    )
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate")
    p.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        default="sgd",
        help="SGD with Nesterov momentum (default; the CNN) or AdamW (the ViT presets)",
    )
    p.add_argument("--weight-decay", type=float, default=4e-5)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument(
        "--random",
        dest="n_random",
        type=int,
        default=1,
        help="random sub-networks per step besides largest and smallest",
    )
    p.add_argument(
        "--kd-ratio",
        type=float,
        default=0.5,
        help="weight of distillation from the largest vs labels for the others",
    )
    p.add_argument(
        "--phases",
        default="",
        help="progressive shrinking, e.g. 'full:1,kernel:2,depth:2,expand:3' "
        "(epochs add up to --epochs; default: whole space throughout)",
    )
    p.add_argument("--no-augment", action="store_true", help="no random shift / flip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument(
        "--calib-images", type=int, default=2000, help="training images per BN calibration"
    )
    p.add_argument(
        "--report-random",
        type=int,
        default=6,
        help="random sub-networks measured at the end besides largest, smallest, middle",
    )
    p.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        help="validation images for the per-epoch evaluation (default: all)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from OUT.state.safetensors when it exists"
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start from this checkpoint's weights (same preset) with a fresh schedule",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    hw = p.add_argument_group(
        "devices and ranks",
        "under torchrun (torchrun --nproc-per-node G -m dynofa_ros train ...) each rank trains "
        "on BATCH/WORLD_SIZE images of every global batch; see docs/training.md",
    )
    hw.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="where to train (default auto: cuda when a GPU is usable)",
    )
    hw.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp16", "off"),
        default="auto",
        help="automatic mixed precision (default auto: bf16 on a GPU that has it, else off)",
    )
    hw.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loader processes preparing batches (default: 4 on a GPU, 0 on the CPU)",
    )
    hw.add_argument(
        "--no-channels-last",
        action="store_true",
        help="keep activations in NCHW (channels-last is the default: faster on CPU and GPU)",
    )
    hw.add_argument(
        "--dist-backend",
        choices=("auto", "nccl", "gloo"),
        default="auto",
        help="torch.distributed backend under torchrun (default auto: nccl with one GPU per "
        "rank, gloo on CPUs or when ranks share a GPU)",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="classifier dropout (default: the preset's)",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from dynofa_ros.supernet import data as D
    from dynofa_ros.supernet.distributed import (
        check_batch,
        resolve_amp,
        resolve_device,
        world_from_env,
    )
    from dynofa_ros.supernet.train import TrainOptions, parse_phases, train

    if args.threads:
        torch.set_num_threads(args.threads)
    # device, precision and world-size mistakes fail before the data is read
    check_batch(args.batch_size, world_from_env()[1])
    resolve_amp(args.amp, resolve_device(args.device))
    arch = preset(args.preset)
    labels = args.labels.split(",") if args.labels else None
    test = None
    if args.idx:
        full = D.load_idx_pair(args.idx[0], args.idx[1], labels)
        if str(args.idx[2]) != "-":
            test = D.load_idx_pair(args.idx[2], args.idx[3], full.classes)
    elif args.image_folder:
        size = max(arch.space.resolutions)
        full = D.load_image_folder(args.image_folder / "train", arch.in_channels, size, labels)
        if (args.image_folder / "test").is_dir():
            test = D.load_image_folder(
                args.image_folder / "test", arch.in_channels, size, full.classes
            )
    else:
        full = D.load_fashion_mnist(args.fashion_mnist, "train")
        test = D.load_fashion_mnist(args.fashion_mnist, "test")
    if full.images.shape[1] != arch.in_channels:
        raise ValueError(
            f"preset {arch.name} takes {arch.in_channels}-channel images, the data has "
            f"{full.images.shape[1]}"
        )
    from dataclasses import replace

    if len(full.classes) != arch.num_classes:
        arch = replace(arch, num_classes=len(full.classes))
    if args.dropout is not None:
        if not 0.0 <= args.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
        arch = replace(arch, dropout=args.dropout)
    train_set, val_set = D.split_validation(full, args.val_size)
    if args.train_limit:
        train_set = train_set.subset(torch.arange(min(args.train_limit, len(train_set))))
    opts = TrainOptions(
        arch=arch,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        n_random=args.n_random,
        kd_ratio=args.kd_ratio,
        phases=parse_phases(args.phases),
        seed=args.seed,
        augment_pad=0 if args.no_augment else 2,
        augment_flip=not args.no_augment,
        calib_images=args.calib_images,
        report_random=args.report_random,
        eval_limit=args.eval_limit,
        resume=args.resume,
        init_from=args.init,
        progress=not args.no_progress,
        device=args.device,
        amp=args.amp,
        workers=args.workers,
        channels_last=not args.no_channels_last,
        dist_backend=args.dist_backend,
        command="dynofa train " + " ".join(shlex.quote(a) for a in argv),
    )
    summary = train(opts, train_set, val_set, test)
    if "subnets" not in summary:
        return 0  # a rank other than 0: rank 0 reports
    for entry in summary["subnets"]:
        test_acc = entry.get("test_accuracy")
        print(
            f"{entry['id']}  {entry['macs'] / 1e6:7.2f} MMACs  val {entry['val_accuracy']:.4f}"
            + (f"  test {test_acc:.4f}" if test_acc is not None else "")
        )
    print(f"wrote {opts.out} in {summary['train_seconds']:.0f} s", file=sys.stderr)
    return 0
