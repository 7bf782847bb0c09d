"""The exact table readout (mbe.neuron.lookup) returns what the simulation returns, bit for bit."""

import pytest
import torch

import mbe
from mbe.neuron import lookup
from mbe.neuron.functional import readout
from mbe.neuron.mbe import binary_identity
from mbe.tables import shipped_table_keys


def _probe(table: lookup.LookupTable, domain) -> torch.Tensor:
    """Every change point, the float just below it, the domain's ends and dense random inputs."""
    lo, hi = (float(v) for v in torch.tensor(domain, dtype=torch.float32))
    bp = table.bp[: table.points]
    below = torch.nextafter(bp, torch.tensor(float("-inf")))
    gen = torch.Generator().manual_seed(0)
    dense = torch.rand(20000, generator=gen) * (hi - lo) + lo
    return torch.cat([bp, below, torch.tensor([lo, hi]), dense]).clamp(lo, hi)


def _check(neuron, readout_fn=lookup.table_readout) -> lookup.LookupTable:
    kernels = neuron.prepared(torch.float32, torch.device("cpu"))
    table = lookup.build_table(*kernels, neuron.domain)
    assert table is not None, f"{neuron}: no table"
    x = _probe(table, neuron.domain)
    out, counts, crowded = readout_fn(x, *table.args())
    crowded = crowded > 0
    ref_out, ref_counts = readout(x, *kernels)
    ok = ~crowded  # crowded bins are simulated by the caller
    assert torch.equal(out[ok], ref_out[ok]) and torch.equal(counts[ok], ref_counts[ok]), neuron
    assert float(crowded[-20000:].float().mean()) <= 2 * lookup.MAX_OVERFLOW  # of uniform inputs, few simulated
    return table


def test_change_points_are_where_the_pattern_changes():
    """A 2-step neuron with thresholds 1 and 0.5 on [0, 2]: its spike pattern changes at 0.5, 1 and 1.5."""
    d = torch.tensor([[1.0, 0.5]])
    bp = lookup.change_points(d, d.clone(), d.clone(), None, 0.0, 2.0)
    assert bp.tolist() == [0.5, 1.0, 1.5]


@pytest.mark.parametrize("timesteps", [4, 8, 16])
def test_tables_of_shipped_neurons_read_what_simulation_computes(timesteps):
    keys = [k for k in shipped_table_keys() if k.timesteps == timesteps and k.recipe == "best" and k.decay]
    assert keys
    for key in keys[:: 3 if timesteps == 16 else 1]:  # every third at T=16 in this tier; all in the slow test
        _check(mbe.get_neuron(key.function, n_basis=key.n_basis, timesteps=timesteps))


@pytest.mark.slow
def test_every_shipped_table_and_identity_at_t4_to_32_reads_what_simulation_computes():
    for key in shipped_table_keys():
        if key.decay and key.recipe == "best":
            _check(mbe.get_neuron(key.function, n_basis=key.n_basis, timesteps=key.timesteps))
    for n, t in [(8, 4), (8, 16), (16, 8), (1, 20)]:
        _check(binary_identity(n, t, (-3.0, 5.0)))
    # 8 binary expansions of 32 steps change pattern at ~2^34 inputs: no table, the simulation serves it
    big = binary_identity(8, 32, (-3.0, 5.0))
    assert lookup.build_table(*big.prepared(torch.float32, torch.device("cpu")), big.domain) is None


@pytest.mark.slow
def test_compiled_table_readout_reads_what_simulation_computes(monkeypatch):
    monkeypatch.setenv("MBE_COMPILE", "1")
    compiled = torch.compile(lookup.table_readout, dynamic=True)
    gelu = _check(mbe.get_neuron("gelu", n_basis=4, timesteps=16), compiled)
    _check(binary_identity(8, 16, (-1.0, 1.0)), compiled)
    relu = _check(mbe.get_neuron("relu", n_basis=4, timesteps=4), compiled)
    assert {bool(gelu.log_map), bool(relu.log_map)} == {False, True}  # both bin maps


def test_a_readout_of_nan_or_infinite_inputs_stays_inside_the_table():
    """The gathers are unchecked (``aten._unsafe_index``), so every index must be in range whatever the input: NaN
    goes to the first bin, infinities to the end bins, and their readout is a piece of the table, not a crash."""
    for neuron in (mbe.get_neuron("gelu", n_basis=4, timesteps=8), mbe.get_neuron("relu", n_basis=4, timesteps=4)):
        table = lookup.build_table(*neuron.prepared(torch.float32, torch.device("cpu")), neuron.domain)
        x = torch.tensor([float("nan"), float("inf"), float("-inf"), 3.0e38, -3.0e38])
        assert int(lookup.bin_index(x, *table.args()[:5]).min()) == 0
        assert int(lookup.bin_index(x, *table.args()[:5]).max()) == table.first.numel() - 1
        out, counts, _ = lookup.table_readout(x, *table.args())
        assert set(out.tolist()) <= set(table.value.tolist()) and set(counts.tolist()) <= set(table.count.tolist())


def test_with_tables_on_a_neuron_reads_its_table_with_the_same_numbers(monkeypatch):
    """MBE_TABLES=1: a neuron with N T above MIN_STEPS builds its table on first use and reads from it (the
    crowded bins simulated), with outputs and counts identical to the simulation's; off by default."""
    neuron = binary_identity(8, 16, (-1.0, 1.0))
    x = torch.cat([torch.linspace(-1.5, 1.5, 3001), torch.ones(5)])  # clamped ends, the crowded top
    monkeypatch.delenv("MBE_TABLES", raising=False)
    ref, _ = neuron.evaluate(x)
    assert neuron.lookup_table(build=False) is None  # off by default
    monkeypatch.setenv("MBE_TABLES", "1")
    res, _ = neuron.evaluate(x)
    table = neuron.lookup_table(build=False)
    assert table is not None
    assert torch.equal(res.output, ref.output) and torch.equal(res.spike_counts, ref.spike_counts)
    table.first[::3] = -1  # mark a third of the bins crowded: their inputs are simulated
    res, _ = neuron.evaluate(x)
    assert torch.equal(res.output, ref.output) and torch.equal(res.spike_counts, ref.spike_counts)
    small = mbe.get_neuron("gelu", n_basis=4, timesteps=8)  # N T = 32: the simulation is as cheap
    small.evaluate(x)
    assert small.lookup_table(build=False) is None


def test_too_crowded_a_neuron_gets_no_table(monkeypatch):
    monkeypatch.setattr(lookup, "MAX_OVERFLOW", 0.0)
    monkeypatch.setattr(lookup, "PER_BIN", 0)
    neuron = mbe.get_neuron("gelu", n_basis=4, timesteps=8)
    assert lookup.build_table(*neuron.prepared(torch.float32, torch.device("cpu")), neuron.domain) is None
