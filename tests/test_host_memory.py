"""train.keep_host_memory: with glibc, a step's large activations reuse freed heap memory instead of
being mapped and page-faulted afresh every step (counted with the kernel's minor page faults)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from training.host_memory import glibc, keep_freed_host_memory

# Forward + backward of a 1-D conv whose activations (32 x 128 x 3199 float32, 52 MB) are above
# glibc's largest adaptive mmap threshold (32 MiB); prints the minor page faults of each step.
STEPS = """
import json, resource, sys
import torch
from training.host_memory import keep_freed_host_memory
kept = keep_freed_host_memory(sys.argv[1] == "on")
torch.manual_seed(0)
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv1d(1, 128, 10, 5), torch.nn.ReLU(), torch.nn.Conv1d(128, 8, 4, 2))
x = torch.randn(32, 1, 16000)
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(x).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults}))
"""


def step_faults(setting: str) -> dict:
    done = subprocess.run([sys.executable, "-c", STEPS, setting], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(glibc() is None, reason="mallopt thresholds are glibc's")
def test_kept_memory_is_reused_instead_of_faulted_in_again():
    default, kept = step_faults("off"), step_faults("on")
    assert not default["kept"] and kept["kept"]
    pages = 32 * 128 * 3199 * 4 // 4096  # one activation of the first convolution, in 4 KiB pages
    # glibc's default: every step maps its activations afresh (at least the first conv's output)
    assert min(default["faults"][5:]) > pages
    # kept: once the heap has grown to the step's peak, later steps fault (almost) nothing
    assert sum(kept["faults"][5:]) < 0.02 * sum(default["faults"][5:])


def test_disabled_is_a_no_op():
    assert keep_freed_host_memory(False) is False
