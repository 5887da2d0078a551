"""Suite-wide settings: one torch thread.

The tests run tiny tensors, where a second thread only adds synchronisation (and,
on a busy 2-core machine, makes a 0.3 ms step take 0.3 s). Benchmarks, not tests,
measure multi-threaded speed.
"""
import torch

torch.set_num_threads(1)
