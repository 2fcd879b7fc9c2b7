"""simclr_lite: SimCLR (Chen et al., 2020) in a few small, tested modules.

One concept of the paper per module:

- :mod:`simclr_lite.data`: CIFAR-10 and ImageFolder trees as uint8 tensors.
- :mod:`simclr_lite.augment`: the augmentations of Appendix A, batched.
- :mod:`simclr_lite.models`: ResNet encoder f and projection head g (Sec. 2.1).
- :mod:`simclr_lite.losses`: NT-Xent (eq. 1) and the losses of Table 2.
- :mod:`simclr_lite.optim`: LARS, learning-rate scaling, warmup + cosine.
- :mod:`simclr_lite.config`: the run's configuration, its presets and validation.
- :mod:`simclr_lite.sampling`: data order, augmentation seeds, the split of a batch.
- :mod:`simclr_lite.splits`: a dataset split in memory or streamed, and its features.
- :mod:`simclr_lite.train`: the pretraining loop (Algorithm 1).
- :mod:`simclr_lite.run`: the run folder (config, metrics, checkpoint, summary) and ``load_run``.
- :mod:`simclr_lite.evaluate`: kNN monitor, linear evaluation, fine-tuning.
- :mod:`simclr_lite.distributed`: torchrun / DDP, global BN, gathered negatives.

Every name is imported from the module that defines it (the errors from :mod:`simclr_lite.errors`);
the package itself re-exports nothing.
"""
__version__ = "0.1.0"
