"""Evaluating representations: kNN monitor, linear evaluation, fine-tuning (Sec. 2.3, Tables 6-8).

SimCLR's representation is h, the encoder's output before the projection
head. It is judged by a classifier trained on frozen h (linear evaluation,
Table 6), by fine-tuning the whole network on a fraction of the labels
(Table 7), and, cheaply during training, by a weighted k-nearest-neighbour
vote (k = 200, cosine similarity, votes weighted by exp(sim / 0.1); Wu et
al. 2018), which needs no training at all.

Book: chapter 6 (``book/06_evaluation.ipynb``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import autocast_dtype
from .checkpoint import atomic_write
from .errors import ConfigError


def _move_for_call(module: nn.Module, device: torch.device) -> list[tuple] | None:
    """Move ``module``'s parameters and buffers to ``device``; return what :func:`_put_back` needs to give it
    its own tensors back (None when every one is on ``device`` already)."""
    saved = [(m, kind, name, t, t.data, None if t.grad is None else t.grad.data)
             for m in module.modules() for kind, named in (("p", m._parameters), ("b", m._buffers))
             for name, t in named.items() if t is not None]
    if all(t.device == device for *_, t, _, _ in saved):
        return None
    module.to(device)
    return saved


def _put_back(saved: list[tuple] | None) -> None:
    """Undo :func:`_move_for_call`: the module's own tensors again (no copy), on the device they were on."""
    for m, kind, name, t, data, grad in saved or []:
        if kind == "b":
            m._buffers[name] = t
            continue
        t.grad = None
        t.data = data        # the same Parameter object (``.to`` may have replaced it or its data)
        t.grad = grad
        m._parameters[name] = t


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                     device: str | torch.device | None = None) -> torch.Tensor:
    """h for every image: uint8 (N, 3, H, W) or float in [0, 1] -> float32 (N, D) on the CPU.

    The encoder runs on ``device`` (default: where its parameters are). An
    encoder that sits elsewhere (a model loaded from the run cache is on the
    CPU) is moved to ``device`` for the call and afterwards has its own
    tensors back, on the device they were on. It runs in eval mode (batch-norm
    running statistics) and is put back in its previous mode afterwards. On a
    GPU it runs under autocast in the dtype the GPU supports
    (:func:`~simclr_lite.distributed.autocast_dtype`: bf16, else fp16); a
    float64 encoder runs in float64.
    """
    param = next(encoder.parameters())
    device = torch.device(device) if device is not None else param.device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = torch.float64 if param.dtype == torch.float64 else torch.float32   # float64: exactness runs
    amp = autocast_dtype(device) if dtype == torch.float32 else None
    was_training = encoder.training
    saved = _move_for_call(encoder, device)
    encoder.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device, non_blocking=True)
            x = x.to(dtype).div_(255) if x.dtype == torch.uint8 else x.to(dtype)
            if amp is not None:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp):
                    h = encoder(x)
            else:
                h = encoder(x)
            out.append(h.float().cpu())
    finally:
        encoder.train(was_training)
        _put_back(saved)
    return torch.cat(out)


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                k: int = 200, temperature: float = 0.1, num_classes: int | None = None,
                chunk_size: int = 2048) -> torch.Tensor:
    """Class scores of the weighted kNN classifier (Wu et al. 2018, used as SimCLR's monitor).

    Cosine similarity between l2-normalised features; each of the k nearest
    training features votes for its label with weight exp(sim / temperature).
    Returns scores of shape (N_test, C); ``argmax`` is the prediction.

    Example: a bank of 4 features, two per class, and one query near each class.
    With k = 3 each query's third neighbour is of the other class; it votes
    too, but with a weight ``exp(sim / 0.1)`` far smaller than the two close ones:

    >>> import torch
    >>> from simclr_lite.evaluate import knn_predict
    >>> bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> queries = torch.tensor([[1.0, 0.2], [0.2, 1.0]])
    >>> scores = knn_predict(bank, labels, queries, k=3)
    >>> scores.shape                          # (N_test, C)
    torch.Size([2, 2])
    >>> scores.argmax(1)                      # the predicted classes
    tensor([0, 1])
    >>> (scores > 0).tolist()                 # both classes got votes
    [[True, True], [True, True]]
    >>> bool(scores[0, 0] > 1000 * scores[0, 1])
    True
    """
    if k < 1:
        raise ConfigError(f"kNN needs k >= 1, got {k}")
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(bank.device)
    scores = []
    sim_buffer = None   # one (chunk, N_train) buffer for every chunk: no fresh pages to fault in and zero
    for i in range(0, len(test_features), chunk_size):
        q = F.normalize(test_features[i:i + chunk_size].float().to(bank.device), dim=1)
        if sim_buffer is None:
            sim_buffer = torch.empty(len(q), len(bank), device=bank.device)
        sim = torch.mm(q, bank.T, out=sim_buffer[:len(q)])
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=bank.device)
        votes.scatter_add_(1, labels[top_idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 200, temperature: float = 0.1) -> float:
    """Top-1 accuracy (a fraction) of :func:`knn_predict`."""
    scores = knn_predict(train_features, train_labels, test_features, k, temperature)
    return (scores.argmax(1).cpu() == test_labels.cpu()).float().mean().item()


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies as fractions, keyed ``top1``, ``top5``..."""
    out = {}
    for k in ks:
        k_ = min(k, logits.shape[1])
        hit = (logits.topk(k_, dim=1).indices == labels.view(-1, 1)).any(dim=1)
        out[f"top{k}"] = hit.float().mean().item()
    return out


def linear_eval(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                test_labels: torch.Tensor, epochs: int = 100, lr: float = 0.1, weight_decay: float = 1e-5,
                batch_size: int = 1024, seed: int = 0,
                device: str | torch.device | None = None) -> dict[str, float]:
    """Linear evaluation on frozen features (Sec. 2.3, Table 6).

    A logistic-regression layer is trained on standardised features with
    SGD + Nesterov momentum and a cosine schedule (the encoder is frozen, so
    features are computed once). Returns ``{"top1", "top5"}`` on the test set.
    ``device``: where the features and the layer live while it trains (None: where
    ``train_features`` are); the shuffling is drawn on the CPU, so a run is the same
    batch for batch on any device.

    Example: 8-dimensional "features" of 3 well-separated classes (Gaussian
    clusters around 5 e_0, 5 e_1, 5 e_2), 60 for training and 30 for testing;
    top-5 of 3 classes counts every class, so it is 1:

    >>> import torch
    >>> from simclr_lite.evaluate import linear_eval
    >>> _ = torch.manual_seed(0)
    >>> centres = 5 * torch.eye(3, 8)
    >>> y_train, y_test = torch.arange(60) % 3, torch.arange(30) % 3
    >>> x_train = centres[y_train] + torch.randn(60, 8)
    >>> x_test = centres[y_test] + torch.randn(30, 8)
    >>> linear_eval(x_train, y_train, x_test, y_test, epochs=20)
    {'top1': 1.0, 'top5': 1.0}
    """
    g = torch.Generator().manual_seed(seed)
    num_classes = int(train_labels.max()) + 1
    device = torch.device(device) if device is not None else train_features.device
    train_features, test_features = train_features.to(device), test_features.to(device)
    train_labels, test_labels = train_labels.to(device), test_labels.to(device)
    mean, std = train_features.mean(0), train_features.std(0) + 1e-6
    xtr, xte = (train_features - mean) / std, (test_features - mean) / std
    with torch.random.fork_rng(devices=[]):   # the classifier's initialisation is seeded too
        torch.manual_seed(seed)
        clf = nn.Linear(xtr.shape[1], num_classes).to(device)
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(xtr) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(xtr), generator=g).to(device)
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(clf(xtr[idx]), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        return topk_accuracy(clf(xte), test_labels)


def fine_tune(encoder: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor,
              test_images: torch.Tensor, test_labels: torch.Tensor, epochs: int = 30, batch_size: int = 256,
              lr: float = 0.05, weight_decay: float = 5e-4, seed: int = 0,
              device: str | torch.device | None = None,
              augment: Callable[..., torch.Tensor] | None = None) -> dict[str, float]:
    """Fine-tune the encoder plus a new linear layer on labelled images (Table 7).

    Pass the label subset from :func:`simclr_lite.data.label_subset` as
    ``train_images``/``train_labels``. Augmentation is random crop + flip
    (as the paper's fine-tuning) unless ``augment`` (``f(images, generator=g)``
    on float images in [0, 1]) replaces it, as the supervised column of
    Table 1 does with colour distortion; SGD + Nesterov, cosine schedule. The
    encoder is modified in place (a randomly initialised one trains from
    scratch) and moved to ``device``, where training and testing run
    (default: where the encoder's parameters are). Returns ``{"top1", "top5"}``.
    Book: chapter 6.
    """
    from .augment import horizontal_flip, random_resized_crop

    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    gcpu = torch.Generator().manual_seed(seed)
    num_classes = int(train_labels.max()) + 1
    feat_dim = getattr(encoder, "feat_dim", None) or extract_features(encoder, train_images[:2],
                                                                      device=device).shape[1]
    with torch.random.fork_rng(devices=[]):   # the new layer's initialisation is seeded too
        torch.manual_seed(seed)
        head = nn.Linear(feat_dim, num_classes)
    model = nn.Sequential(encoder, head).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    steps_per_epoch = max(1, len(train_images) // batch_size)  # a subset smaller than a batch: one step
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    size = train_images.shape[-1]
    for _ in range(epochs):
        perm = torch.randperm(len(train_images), generator=gcpu)
        for s in range(steps_per_epoch):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            x = train_images[idx].to(device).float().div_(255)
            if augment is None:
                x = horizontal_flip(random_resized_crop(x, size, scale=(0.25, 1.0), generator=g), generator=g)
            else:
                x = augment(x, generator=g)
            loss = F.cross_entropy(model(x), train_labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, len(test_images), 1024):
            logits.append(model(test_images[i:i + 1024].to(device).float().div_(255)).float().cpu())
    return topk_accuracy(torch.cat(logits), test_labels)


def raw_pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Flattened, per-image-centred pixels: the baseline "representation" of chapter 1."""
    x = images.float().div(255).flatten(1)
    return x - x.mean(1, keepdim=True)


def describe_result(result: dict[str, Any]) -> str:
    """One line saying what a protocol's top-1 was measured on: test images, train (bank or labelled)
    images, and k or epochs. ``evaluate`` prints it; keys as in :func:`save_result`."""
    p, n_test = result["protocol"], result["test_images"]
    what = {"knn": f"k={result.get('k')} nearest of a bank of {result.get('train_images')} train images",
            "linear": f"a linear classifier on frozen h of {result.get('train_images')} train images, "
                      f"{result.get('epochs')} epochs",
            "finetune": f"encoder + linear layer fine-tuned on {result.get('labelled_images')} labelled train "
                        f"images (label fraction {result.get('label_fraction')}), {result.get('epochs')} epochs",
            }.get(p, f"{result.get('train_images')} train images")
    top5 = f", top-5 {result['top5']:.4f}" if "top5" in result else ""
    return f"{p} top-1 {result['top1']:.4f}{top5} on {n_test} test images ({what})"


def save_result(run: str | Path, result: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``result`` to ``eval_<protocol>.json`` (each protocol's latest) and ``eval.json`` (the latest
    of any protocol, ``{"protocol", "top1", ...}``) in the run folder, each atomically; return both paths."""
    run = Path(run)
    paths = (run / f"eval_{result['protocol']}.json", run / "eval.json")
    text = (json.dumps(result, indent=2) + "\n").encode()
    for path in paths:
        atomic_write(path, lambda fh: fh.write(text), "the result above was not saved; free disk space and "
                                                      "run evaluate again")
    return paths
