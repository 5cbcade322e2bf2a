import pytest

from dse_core import (
    AllowedSet,
    ArrayConfig,
    CompressionPlan,
    LayerEnergy,
    LayerSpec,
    NetworkEnergy,
    ValidationError,
)


def conv(**kw):
    base = dict(name="c", kind="conv", in_channels=64, out_channels=128, kernel=(3, 3),
                stride=(1, 1), padding=(1, 1), input_hw=(56, 56), output_hw=(56, 56))
    base.update(kw)
    return LayerSpec(**base)


def test_layer_gemm_dims_and_macs():
    spec = conv(batch=2)
    assert (spec.gemm_m, spec.gemm_k, spec.gemm_n) == (2 * 56 * 56, 64 * 9, 128)
    assert spec.macs == 2 * 56 * 56 * 64 * 9 * 128
    assert spec.weight_count == 64 * 9 * 128


def test_grouped_layer_is_per_group():
    spec = conv(in_channels=32, out_channels=64, groups=4)
    assert (spec.gemm_k, spec.gemm_n) == (8 * 9, 16)
    assert spec.macs == 4 * 56 * 56 * 72 * 16


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("in_channels", 0, "LayerSpec.in_channels = 0: expected a positive integer"),
        ("kind", "pool", "LayerSpec.kind = 'pool'"),
        ("kernel", (3,), "LayerSpec.kernel = (3,): expected a pair"),
        ("padding", (-1, 0), "LayerSpec.padding = (-1, 0)"),
        ("groups", 3, "LayerSpec.groups = 3: expected a divisor"),
        ("name", " ", "LayerSpec.name"),
        ("batch", True, "LayerSpec.batch = True"),
    ],
)
def test_layer_validation_names_the_field(field, value, fragment):
    with pytest.raises(ValidationError) as err:
        conv(**{field: value})
    assert fragment in str(err.value)


def test_depthwise_needs_groups_equal_channels():
    with pytest.raises(ValidationError, match="depthwise"):
        conv(kind="depthwise", in_channels=8, out_channels=8, groups=2)
    assert conv(kind="depthwise", in_channels=8, out_channels=8, groups=8).gemm_k == 9


def test_array_defaults_psum_width_from_rows():
    assert ArrayConfig(64, 64).psum_bits == 22  # the paper's 22-bit accumulator
    assert ArrayConfig(32, 8).psum_bits == 21
    assert ArrayConfig(1, 1).psum_bits == 16
    assert ArrayConfig(64, 64, psum_bits=32).psum_bits == 32


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(rows=0, cols=4), "ArrayConfig.rows = 0"),
        (dict(rows=4, cols=1 << 17), "ArrayConfig.cols = 131072: expected at most 65536"),
        (dict(rows=4, cols=4, dataflow="rs"), "ArrayConfig.dataflow = 'rs'"),
        (dict(rows=4, cols=4, psum_bits=12), "ArrayConfig.psum_bits = 12"),
    ],
)
def test_array_validation(kwargs, fragment):
    with pytest.raises(ValidationError) as err:
        ArrayConfig(**kwargs)
    assert fragment in str(err.value)


def test_array_parse():
    assert ArrayConfig.parse("64x32") == ArrayConfig(64, 32)
    for bad in ("64", "axb", "64x", "0x4", "-4x4"):
        with pytest.raises(ValidationError):
            ArrayConfig.parse(bad)


def test_allowed_set_is_sorted_unique_and_holds_zero():
    s = AllowedSet("c", (3, 0, -5, 3))
    assert s.codes == (-5, 0, 3) and s.n_levels == 3
    with pytest.raises(ValidationError, match="containing 0"):
        AllowedSet("c", (1, 2))
    with pytest.raises(ValidationError, match=r"\[-128, 127\]"):
        AllowedSet("c", (0, 128))


def test_compression_plan_is_immutable_and_validated():
    plan = CompressionPlan({"a": 16, "b": 256})
    with pytest.raises(TypeError):
        plan.n_levels["a"] = 3  # type: ignore[index]
    assert hash(plan) == hash(CompressionPlan({"b": 256, "a": 16}))
    with pytest.raises(ValidationError, match=r"n_levels\['a'\] = 0"):
        CompressionPlan({"a": 0})


def test_energy_totals():
    a = LayerEnergy("a", mac_switching_pj=10.0, idle_pj=1.0, fill_drain_pj=2.0,
                    weight_load_pj=3.0, cycles=5, macs=7)
    b = LayerEnergy("b", mac_switching_pj=4.0, cycles=1, macs=2)
    net = NetworkEnergy((a, b))
    assert a.total_pj == 16.0
    assert (net.total_pj, net.mac_switching_pj, net.cycles, net.macs) == (20.0, 14.0, 6, 9)
    with pytest.raises(ValidationError, match="LayerEnergy.idle_pj = nan"):
        LayerEnergy("a", mac_switching_pj=1.0, idle_pj=float("nan"))
    with pytest.raises(ValidationError, match="LayerEnergy.mac_switching_pj = -1"):
        LayerEnergy("a", mac_switching_pj=-1)
