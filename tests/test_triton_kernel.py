"""The Triton kernel, run by Triton's interpreter on the CPU, against the torch path."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import torch, mbe
    from mbe.kernels import mbe_forward_triton
    from mbe.neuron.functional import simulate
    torch.manual_seed(0)
    cases = [("gelu", 4, 16, (37,)), ("exp2", 8, 8, (3, 50)), ("reciprocal", 8, 12, (2, 2, 9)),
             ("identity", 8, 16, (0,))]
    for name, n, t, shape in cases:
        neuron = mbe.get_neuron(name, n_basis=n, timesteps=t)
        lo, hi = neuron.domain
        x = lo + (hi - lo) * torch.rand(shape)
        d, r, vth = neuron.kernels()
        w, b, c = neuron.readout()
        ref = simulate(x, d, r, vth, w, b, c, return_counts=True)
        out, counts = mbe_forward_triton(x, d, r, vth, w, b, c)
        assert out.shape == x.shape and counts.shape == x.shape, (out.shape, x.shape)
        assert torch.equal(counts, ref.spike_counts), name
        assert torch.allclose(out, ref.output, rtol=1e-6, atol=1e-6), (name, (out - ref.output).abs().max())
        # the module's explicit triton backend takes the same kernel
        neuron.backend = "triton"
        assert torch.allclose(neuron(x), ref.output, rtol=1e-6, atol=1e-6)
        print("ok", name, tuple(shape), float((out - ref.output).abs().max()) if x.numel() else 0.0)
    """
)


def test_triton_interpreter_matches_torch_path():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok ") == 4


def test_auto_backend_uses_torch_on_cpu():
    import torch

    import mbe

    neuron = mbe.get_neuron("gelu", timesteps=8)
    assert not neuron._use_triton(torch.zeros(3))
