"""Command line: ``python -m simclr_lite pretrain|evaluate ...``.

Examples::

    python -m simclr_lite pretrain --preset cifar10-cpu --data ../shared/datasets --out runs/cpu
    python -m simclr_lite evaluate runs/cpu --data ../shared/datasets --protocol knn
    torchrun --nproc_per_node=8 -m simclr_lite pretrain --preset imagenet-r50 --data /imagenet --out runs/in

Every :class:`~simclr_lite.config.Config` field is a flag (``--batch-size``,
``--lr``, ``--temperature``...). Problems with the input end in one line on
stderr that says what is wrong and how to fix it, and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, SimCLRError

_HELP = {  # one line per Config field, shown by --help
    "data": "CIFAR-10 root (cifar-10-batches-py/, train/ + test/ ImageFolder trees or their .tar.gz) or any "
            "folder with train/ and test/ ImageFolder trees; default $SIMCLR_DATA, else data/",
    "image_size": "side of decoded images and of the augmented views (pixels)",
    "download": "download CIFAR-10 with torchvision when it is not found under --data",
    "skip_bad_images": "skip (and count) unreadable images instead of stopping",
    "loader": "memory (decode once, keep uint8 images on the device) or stream (decode each batch in "
              "DataLoader workers: ImageNet-size ImageFolder trees)",
    "workers": "DataLoader worker processes per process (--loader stream)",
    "decode_size": "--loader stream: side images are decoded to before the random crop (0: 8/7 x --image-size)",
    "train_limit": "train on a random subset of N images (0: all)",
    "test_limit": "evaluate on a random subset of N test images (0: all)",
    "arch": "encoder: resnet10, resnet18, resnet34 or resnet50",
    "width": "channel width multiplier (Fig. 7)",
    "cifar_stem": "3x3 stride-1 first conv without max-pool (Appendix B.9)",
    "stem_stride": "stride of the CIFAR stem's conv (2: 4x less compute, lower accuracy)",
    "head": "projection head g: none, linear or nonlinear (Fig. 8)",
    "proj_dim": "output size of the projection head",
    "proj_hidden": "hidden width of the nonlinear projection head (0: the size of h, as the paper)",
    "strength": "colour distortion strength s (Appendix A; 0.5 for CIFAR-10)",
    "blur": "Gaussian blur augmentation (ImageNet)",
    "min_scale": "smallest random-crop area fraction",
    "loss": "nt_xent, nt_logistic or margin_triplet (Table 2)",
    "temperature": "temperature tau of NT-Xent (> 0)",
    "normalize": "l2-normalise projections in nt_xent and nt_logistic (Table 5 compares without; "
                 "margin_triplet always normalises)",
    "semi_hard": "semi-hard negative mining for nt_logistic and margin_triplet (Table 4)",
    "margin": "margin m of margin_triplet (Table 2)",
    "neg_group": "nt_xent: negatives only from sub-batches of this many pairs (0: the whole batch; Fig. 9's control)",
    "epochs": "number of pretraining epochs",
    "batch_size": "global batch size N (>= 2; split evenly over torchrun processes)",
    "optimizer": "lars, sgd or adam",
    "lr": "base learning rate (scaled by --lr-scaling)",
    "lr_scaling": "linear (lr x B/256), sqrt (lr x sqrt(B)) or none (Appendix B.1)",
    "weight_decay": "weight decay (not applied to biases and BN parameters)",
    "momentum": "momentum of LARS/SGD",
    "warmup_epochs": "epochs of linear learning-rate warmup before the cosine decay",
    "knn_every": "run the kNN monitor every N epochs (0: only at the end)",
    "knn_k": "neighbours of the kNN monitor",
    "knn_t": "temperature of the kNN monitor's weighted votes",
    "knn_bank": "training images in the monitor's bank between epochs (0: all; the last epoch uses all)",
    "log_every": "steps between lines of metrics.jsonl",
    "seed": "random seed (data order, augmentations, initialisation)",
    "device": "auto, cpu, cuda or cuda:N",
    "amp": "mixed precision: auto (bf16 on GPU), off, bf16 or fp16",
    "dtype": "float32, or float64 for exactness checks on a CPU (1 and 2 processes then agree to ~1e-12)",
    "channels_last": "channels-last memory format",
    "compile": "torch.compile the model",
    "sync_bn": "global (synchronised) batch norm: auto (on with >1 process), on or off",
    "aug_shards": "draw augmentations in this many equal parts of the global batch (0: 8 when 8 splits evenly "
                  "over the processes and the batch, so 1, 2, 4 and 8 processes draw the same views; "
                  "otherwise one part per process)",
    "threads": "CPU threads for PyTorch (0: default)",
    "checkpoint_every": "also checkpoint every N steps (0: at the end of each epoch only)",
    "time_limit": "stop cleanly after this many minutes, then evaluate (0: no limit)",
    "time_budget": "minutes: anneal the learning rate to 0 by then, stop and evaluate (budgeted training; "
                   "epochs become an upper bound; 0: the schedule follows epochs alone; cifar10-cpu sets "
                   "14.5, which --epochs without --time-budget turns off)",
    "extended_from": "recorded by --resume --extend: the epochs the run was first planned for (0: never extended)",
    "nan_check_every": "steps between checks for a NaN/inf loss (0: every step on CPU, every --log-every steps on GPU)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: Any = None) -> argparse.Namespace:
        """Parse; ``pretrain`` needs ``--out`` unless it only prints its config (``--print-config``)."""
        ns = super().parse_args(args, namespace)
        if getattr(ns, "command", None) == "pretrain" and ns.out is None and not ns.print_config:
            self.exit(2, f"error: the following arguments are required: --out; see '{self.prog} pretrain --help'\n")
        return ns


def _shown(value: Any) -> str:
    """A default as typed on the command line: true/false for booleans."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _number(kind: type, flag: str):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects a {kind.__name__}, got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    from .config import PRESETS, Config

    p = _Parser(prog="python -m simclr_lite", description="SimCLR pretraining and evaluation (simclr_lite).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    default_preset = "cifar10-cpu"
    pre = sub.add_parser("pretrain", help="pretrain an encoder with SimCLR",
                         description=f"Pretrain with SimCLR. Start from a preset; any field can be overridden. "
                                     f"Each field's help ends with its default (Config's) and, where the default "
                                     f"preset {default_preset} sets another value, that value; "
                                     f"'--preset NAME --print-config' prints the full config a preset and flags give.")
    pre.add_argument("--preset", default=default_preset, choices=list(PRESETS),
                     help=f"starting configuration (default: {default_preset})")
    pre.add_argument("--out", default=None,
                     help="run folder: config.json, metrics.jsonl, checkpoint.pt, run.json (required, except "
                          "with --print-config)")
    pre.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its checkpoint, exactly (same settings and images)")
    pre.add_argument("--extend", action="store_true",
                     help="with --resume and a larger --epochs: train a run further; its schedule is re-planned "
                          "for the new epochs from where it stands (so it differs from a run started with them) "
                          "and config.json records the epochs it was first planned for (extended_from)")
    pre.add_argument("--no-progress", action="store_true", help="no progress bar")
    pre.add_argument("--print-config", action="store_true",
                     help="print the full config (JSON) that --preset and the other flags give, and exit; "
                          "writes nothing")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = {"int": int, "float": float, "bool": bool}.get(str(f.type).split(" ")[0], str)
        text = _HELP.get(f.name, "")
        if f.default is not None:
            text += f" (default: {_shown(f.default)}"
            in_preset = PRESETS[default_preset].get(f.name, f.default)
            text += f"; {default_preset}: {_shown(in_preset)})" if in_preset != f.default else ")"
        if kind is bool:
            pre.add_argument(flag, type=_bool, default=None, metavar="BOOL", help=text)
        elif kind is str:
            pre.add_argument(flag, type=str, default=None, help=text)
        else:
            pre.add_argument(flag, type=_number(kind, flag), default=None, help=text)

    ev = sub.add_parser("evaluate", help="evaluate a run's encoder (kNN, linear or fine-tuning)",
                        description="Evaluate the encoder of a run folder; prints top-1 and what it was measured "
                                    "on, and writes eval_<protocol>.json (each protocol's latest result) and "
                                    "eval.json (the latest of any protocol).")
    ev.add_argument("run", help="run folder written by 'pretrain'")
    ev.add_argument("--protocol", default="knn", choices=["knn", "linear", "finetune"])
    ev.add_argument("--data", default=None,
                    help="dataset (default: $SIMCLR_DATA, else data/); never read from the path a run folder "
                         "names, so a run folder from elsewhere cannot point evaluate at crafted files")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ev.add_argument("--k", type=_number(int, "--k"), default=200, help="kNN neighbours")
    ev.add_argument("--epochs", type=_number(int, "--epochs"), default=None,
                    help="epochs of the linear classifier (100) or of fine-tuning (30)")
    ev.add_argument("--label-fraction", type=_number(float, "--label-fraction"), default=1.0,
                    help="fraction of labels for fine-tuning (class-balanced; Table 7 uses 0.01 and 0.1)")
    ev.add_argument("--test-limit", type=_number(int, "--test-limit"), default=None,
                    help="evaluate on a random subset of N test images")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar while decoding images")
    return p


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .config import Config, preset
    from .errors import Preempted
    from .train import pretrain

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name, None) is not None}
    out = Path(args.out)
    if args.resume and (out / "config.json").is_file():   # the run's own settings, and the flags given
        path = out / "config.json"
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as e:  # another tool's config.json, or a damaged one
            raise ConfigError(f"{path} is not a simclr_lite config ({type(e).__name__}: {str(e)[:120]}); "
                              f"choose another --out") from None
        cfg = dataclasses.replace(Config.from_dict(saved, str(path)), **overrides)
    else:
        cfg = preset(args.preset, **overrides)
    try:
        summary = pretrain(cfg, out, resume=args.resume, progress=not args.no_progress,
                           **({"extend": True} if args.extend else {}))
    except Preempted as e:
        print(str(e), file=sys.stderr)
        return {signal.SIGINT: 130, getattr(signal, "SIGHUP", -1): 129}.get(e.signum, 143)
    if summary.get("already_finished"):
        print(f"{out} already holds a finished run (status {summary.get('status')}); nothing to train, its "
              f"results are kept (to train it further: --resume --extend --epochs N)")
    if summary.get("knn_top1") is not None:
        print(f"kNN top-1 {summary['knn_top1']:.4f} (k={cfg.knn_k}, {summary['knn_test_images']:,} test images, "
              f"bank of {summary['knn_bank']:,} training images) after {summary['epochs']:.2f} epochs; "
              f"data loading {summary['data_time_s']:.0f} s, training {summary['wall_time_s']:.0f} s on "
              f"{summary['device']}; run in {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .data import label_subset
    from .distributed import describe_device, resolve_device
    from .evaluate import describe_result, fine_tune, knn_accuracy, linear_eval, save_result
    from .sampling import subset_indices
    from .splits import load_splits

    from .checkpoint import load_checkpoint
    from .run import model_of, writer_pid

    _check_evaluate_args(args)
    run = Path(args.run)
    dev = resolve_device(args.device)
    ckpt = load_checkpoint(run / "checkpoint.pt")       # read once: the model and the step it reached
    model, cfg = model_of(ckpt, run / "checkpoint.pt")
    model = model.to(dev).eval()
    step, epoch = int(ckpt["step"]), int(ckpt["epoch"])
    pid = writer_pid(run)
    if pid is not None:
        print(f"warning: {run} is still being trained (pid {pid}); evaluating its checkpoint at step {step} "
              f"(epoch {epoch} of {cfg.epochs})", file=sys.stderr)
    t0 = time.time()
    if cfg.loader == "stream" and args.protocol == "finetune":  # ImageNet-size trees are never all in memory
        raise ConfigError("--protocol finetune reads decoded images into memory; a --loader stream run "
                          "(ImageNet) supports --protocol knn or linear")
    # The data comes from --data, $SIMCLR_DATA or data/: never from a path that the run folder names
    # (a received folder could point at crafted files), and evaluate never downloads.
    train, test = load_splits(dataclasses.replace(cfg, data=None, download=False), args.data,
                              progress=False if args.no_progress else None)
    if args.test_limit:
        test = test.subset(subset_indices(len(test), args.test_limit, cfg.seed + 1))
    if int(train.y.unique().numel()) < 2:
        print("warning: the training data has 1 class: any top-1 says nothing; use a dataset with several "
              "classes", file=sys.stderr)
    xtr, ytr, xte, yte = train.x, train.y, test.x, test.y
    result: dict[str, Any] = {"protocol": args.protocol}
    if args.protocol in ("knn", "linear"):
        ftr, fte = train.features(model.encoder, cfg, dev), test.features(model.encoder, cfg, dev)
        if args.protocol == "knn":
            result["top1"] = knn_accuracy(ftr, ytr, fte, yte, k=args.k)
            result["k"] = min(args.k, len(ftr))   # knn_predict uses at most the whole bank
        else:
            epochs = 100 if args.epochs is None else args.epochs
            result.update(linear_eval(ftr, ytr, fte, yte, epochs=epochs), epochs=epochs)
    else:
        epochs = 30 if args.epochs is None else args.epochs
        keep = label_subset(ytr, args.label_fraction, cfg.seed) if args.label_fraction < 1 else torch.arange(len(ytr))
        result.update(fine_tune(model.encoder, xtr[keep], ytr[keep], xte, yte, epochs=epochs, device=dev))
        result.update(label_fraction=args.label_fraction, labelled_images=len(keep), epochs=epochs)
    result.update({"train_images": len(xtr), "test_images": len(xte), "device": describe_device(dev),
                   "checkpoint_step": step, "checkpoint_epoch": epoch, "run_epochs": cfg.epochs,
                   "run_still_training": pid is not None, "wall_time_s": round(time.time() - t0, 2)})
    print(f"{describe_result(result)}; {result['wall_time_s']:.0f} s; checkpoint at step {step} "
          f"(epoch {epoch} of {cfg.epochs})", flush=True)
    own, latest = save_result(run, result)
    print(f"written to {own} and {latest.name}")
    return 0


def _check_evaluate_args(args: argparse.Namespace) -> None:
    """The evaluate flags that cannot give a meaningful result, refused in one line each, before any work."""
    from .data import check_label_fraction

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    if args.test_limit is not None and args.test_limit < 1:
        raise ConfigError(f"--test-limit must be at least 1 (or left out for all test images), got {args.test_limit}")
    check_label_fraction(args.label_fraction)


def cmd_print_config(args: argparse.Namespace) -> int:
    """``pretrain --print-config``: the validated config of ``--preset`` plus the given flags, as JSON on
    stdout; touches no file (``--out`` is neither needed nor created)."""
    from .config import Config, preset

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                 if getattr(args, f.name, None) is not None}
    cfg = preset(args.preset, **overrides)
    cfg.validate()
    print(json.dumps({"preset": args.preset, **dataclasses.asdict(cfg)}, indent=2))
    return 0


def _what_is_kept(args: argparse.Namespace) -> str:
    """After a failure: a run with a checkpoint continues with --resume; without one, nothing to resume."""
    out = getattr(args, "out", None) if args.command == "pretrain" else None
    if out is not None and (Path(out) / "checkpoint.pt").exists():
        return "the last checkpoint is kept (continue with --resume)"
    return "no checkpoint was written" if args.command == "pretrain" else "nothing was written"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "pretrain" and args.print_config:
            return cmd_print_config(args)
        return cmd_pretrain(args) if args.command == "pretrain" else cmd_evaluate(args)
    except SimCLRError as e:
        rank = os.environ.get("RANK", "0")
        if rank == "0":  # under torchrun a bad config fails every rank alike: rank 0 says it once
            sys.stderr.write(f"error: {e}\n")
        elif not isinstance(e, ConfigError):  # e.g. data missing on one node only
            sys.stderr.write(f"error (rank {rank}): {e}\n")
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:  # outside training (which checkpoints on Ctrl-C): loading data, evaluating
        print(f"error: interrupted; {_what_is_kept(args)}", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk or an unwritable folder outside the checkpoint (which says so itself)
        print(f"error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}; free disk space or fix the "
              f"folder's permissions; {_what_is_kept(args)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # torch's allocators raise RuntimeError subclasses
        if not isinstance(e, MemoryError) and not re.search(r"out of memory|not enough memory", str(e)):
            raise
        print(f"error: out of memory ({type(e).__name__}); use a smaller --batch-size or --image-size "
              f"(or a machine with more memory); {_what_is_kept(args)}", file=sys.stderr)
        return 2
    finally:
        from .distributed import cleanup
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
