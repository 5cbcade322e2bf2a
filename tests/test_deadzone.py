"""Dead-zone projections (more weights to 0), the scheduler's squeeze variants that widen
them under the budget, and distillation in fine-tunes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dse_core import DseError, instantiate
from dse_core.compression.model_io import load_compressed, save_compressed
from dse_core.compression.selection import SelectionRequest
from dse_core.quantization.qat import integer_predict, projection_table, quantize_network
from dse_core.search.plans import allowed_key
from dse_core.types import AllowedSet

EVERY = np.arange(-128, 128)


def test_a_dead_zone_moves_only_the_boundary_between_zero_and_its_neighbours():
    codes = (-100, 0, 40, 90)
    nearest, wide = projection_table(codes), projection_table(codes, 0.75)
    assert (projection_table(codes, 0.5) == nearest).all()
    assert wide[30 + 128] == 0 and wide[31 + 128] == 40        # 0.75 * 40 = 30
    assert nearest[20 + 128] == 0 and nearest[21 + 128] == 40  # nearest: 40 / 2
    assert wide[-75 + 128] == 0 and wide[-76 + 128] == -100    # 0.75 * 100 on its side
    assert nearest[-51 + 128] == -100
    outside = (EVERY > 30) | (EVERY < -75)                      # past the zone: nearest
    assert (wide[outside] == nearest[outside]).all()
    assert (wide[~outside] == 0).all()
    # a one-signed set: the other side has no code but 0, and keeps projecting to 0
    one_sided = projection_table((0, 64), 0.8)
    assert (one_sided[EVERY <= 51] == 0).all() and one_sided[52 + 128] == 64
    rng = np.random.default_rng(3)
    for _ in range(20):  # 0.5 is exactly the nearest rule on any set
        s = {0, *rng.integers(-128, 128, size=int(rng.integers(1, 6))).tolist()}
        assert (projection_table(s, 0.5) == projection_table(s)).all()


def test_allowed_sets_validate_their_dead_zone():
    assert AllowedSet("c", (0, 5)).deadzone == 0.5
    assert AllowedSet("c", (0, 5), 0.7).deadzone == 0.7
    for bad in (0.4, 1.0, True, "wide"):
        with pytest.raises(DseError, match="AllowedSet.deadzone"):
            AllowedSet("c", (0, 5), bad)


@pytest.fixture
def lenet(registry):
    from dse_core.workloads.layers import build_model

    torch.manual_seed(1)
    model, _ = build_model(registry, "lenet5", input_shape=(1, 28, 28), num_classes=10)
    x = torch.randn(32, 1, 28, 28)
    return quantize_network(model.eval(), x.split(8), x[:1]), x


def test_a_dead_zone_in_qat_saves_restores_and_reloads(lenet, registry, tmp_path):
    qnet, x = lenet
    codes = (-96, 0, 64)
    qnet.set_allowed("conv2", codes)
    zeros_nearest = float((qnet.codes()["conv2"] == 0).mean())
    snap = qnet.state()
    qnet.set_allowed("conv2", codes, 0.8)
    zeros_wide = float((qnet.codes()["conv2"] == 0).mean())
    assert zeros_wide > zeros_nearest + 0.05
    assert qnet.allowed_sets()["conv2"] == AllowedSet("conv2", codes, 0.8)
    with torch.no_grad():
        qnet.model.eval()
        logits = qnet.model(x)
    assert torch.equal(integer_predict(qnet, x), logits)
    path = save_compressed(tmp_path / "m.npz", qnet, {
        "model": "lenet5", "input_shape": [1, 28, 28], "num_classes": 10})
    again, _ = load_compressed(registry, path)
    assert again.layers["conv2"].deadzone == 0.8
    assert (again.codes()["conv2"] == qnet.codes()["conv2"]).all()
    with torch.no_grad():
        assert torch.equal(again.model(x), logits)
    qnet.restore(snap)  # back to nearest rounding, table and all
    assert qnet.layers["conv2"].deadzone == 0.5
    assert float((qnet.codes()["conv2"] == 0).mean()) == zeros_nearest
    # a file whose dead zone is out of range: one line naming the field
    arrays = dict(np.load(path))
    arrays["layer/conv2/deadzone"] = np.array(1.5)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DseError, match=r"layer/conv2/deadzone = 1.5: expected a number in"):
        load_compressed(registry, tmp_path / "bad.npz")


def test_the_selection_keeps_its_codes_and_carries_the_dead_zone(registry):
    rng = np.random.default_rng(0)
    weights = np.clip(rng.normal(0, 30, 3000), -127, 127)
    energy = 1.0 + 0.01 * np.abs(EVERY)
    energy[128] = 0.2
    request = SelectionRequest("l", 3, energy, weights)
    options = {"criterion": "lagrangian"}
    plain = instantiate(registry.get("selector", "energy_accuracy"), options).select(request)
    wide = instantiate(registry.get("selector", "energy_accuracy"),
                       {**options, "deadzone": 0.7}).select(request)
    assert wide.codes == plain.codes and (plain.deadzone, wide.deadzone) == (0.5, 0.7)
    assert plain.codes[0] < 0 < plain.codes[-1]  # one code each side: {-54, 0, 40}
    raw = np.clip(np.round(weights), -127, 127).astype(int) + 128
    projected = [projection_table(s.codes, s.deadzone)[raw] for s in (plain, wide)]
    zeros = [float((q == 0).mean()) for q in projected]
    cost = [energy[q + 128].sum() for q in projected]
    assert zeros[1] > zeros[0] + 0.1 and cost[1] < 0.8 * cost[0]  # 57 -> 73 % zeros
    for bad in (0.3, 1, "wide"):
        with pytest.raises(DseError, match=r"energy_accuracy.deadzone"):
            instantiate(registry.get("selector", "energy_accuracy"), {"deadzone": bad})


def test_the_accuracy_cache_key_tells_dead_zones_apart():
    sets = {"a": [0, 64, -96], "b": [0, 5]}
    assert allowed_key(sets) == allowed_key(sets, {"a": 0.5, "b": 0.5})  # old keys hold
    assert allowed_key(sets, {"a": 0.7}) != allowed_key(sets)
    assert allowed_key(sets, {"a": 0.7}) != allowed_key(sets, {"b": 0.7})


class ZoneSession:
    """Two layers already at 3 codes; a dead zone d cuts a layer's energy by (d - 0.5) of
    it and costs ``damage[layer]`` accuracy points per 0.1 of widening."""

    def __init__(self, damage: dict[str, float], budget: float = 2.0,
                 spent: float = 0.0) -> None:
        self.layer_names = list(damage)
        self.energy = {"big": 80.0, "small": 20.0}
        self.damage, self.spent = damage, spent
        self.budget_pct, self.baseline_accuracy = budget, 90.0
        self.zone = {n: 0.5 for n in damage}
        self.steps: list[dict] = []
        self.fine_tunes = self.applied = 0
        self.epochs: list[float] = []
        self.widened: list[dict] = []

    def mac_energy_pj(self) -> float:
        return sum(e * (1.5 - self.zone[n]) for n, e in self.energy.items())

    def energy_shares(self):
        total = self.mac_energy_pj()
        return {n: e * (1.5 - self.zone[n]) / total for n, e in self.energy.items()}

    def preview_energy(self, plan):
        return self.mac_energy_pj()

    def apply(self, plan, options=None):
        self.applied += 1
        for name in plan:
            self.zone[name] = (options or {}).get("deadzone", 0.5)

    def allowed_sets(self):
        return {n: AllowedSet(n, (-1, 0, 1), z) for n, z in self.zone.items()}

    def widen(self, zones):
        self.widened.append(dict(zones))
        self.zone.update(zones)

    def fine_tune(self, epochs):
        self.fine_tunes += 1
        self.epochs.append(epochs)

    def accuracy(self):
        return self.baseline_accuracy - self.spent - sum(
            self.damage[n] * (z - 0.5) / 0.1 for n, z in self.zone.items())

    def within_budget(self, accuracy):
        return accuracy >= self.baseline_accuracy - self.budget_pct

    def snapshot(self):
        return dict(self.zone)

    def restore(self, snapshot):
        self.zone = dict(snapshot)

    def log_step(self, **fields):
        self.steps.append(fields)


def _squeezer(registry, **options):
    return instantiate(registry.get("scheduler", "energy_backtracking"),
                       {"ladder": [3], "squeeze_variants": [
                           {"deadzone": d} for d in (0.6, 0.7, 0.8)], **options})


def test_squeeze_variants_widen_every_layer_then_layer_by_layer(registry):
    session = ZoneSession({"big": 0.45, "small": 0.1})
    plan = _squeezer(registry, squeeze_margin_pct=0.5).run(session)
    assert dict(plan.n_levels) == {"big": 3, "small": 3}
    trail = [(s["step"], s["layer"], s["accepted"]) for s in session.steps]
    # both at 0.6: 0.55 points lost; both at 0.7: 1.1 (kept: the margin leaves 1.5); both
    # at 0.8: 1.65, reverted; then layer by layer, big first: big at 0.8 loses 1.55 in all
    # (reverted, big stops), small at 0.8: 1.2 (kept)
    assert trail == [("squeeze-all", "*", True), ("squeeze-all", "*", True),
                     ("squeeze-all", "*", False), ("squeeze", "big", False),
                     ("squeeze", "small", True)]
    assert session.zone == {"big": 0.7, "small": 0.8}
    assert session.fine_tunes == len(session.steps)
    assert session.mac_energy_pj() == pytest.approx(80 * 0.8 + 20 * 0.7)
    assert session.accuracy() >= 90.0 - 2.0 + 0.5
    # with no margin the same budget takes both to 0.8 at once (1.65 points)
    loose = ZoneSession({"big": 0.45, "small": 0.1})
    _squeezer(registry, squeeze_margin_pct=0.0).run(loose)
    assert loose.zone == {"big": 0.8, "small": 0.8}
    # a budget already spent leaves the squeeze nothing: every try reverted, 3 fine-tunes
    spent = ZoneSession({"big": 0.45, "small": 0.1}, spent=1.6)
    _squeezer(registry).run(spent)
    assert spent.zone == {"big": 0.5, "small": 0.5}
    assert [s["accepted"] for s in spent.steps] == [False, False, False]


def test_widening_keeps_the_codes_and_walks_like_the_squeeze(registry):
    session = ZoneSession({"big": 0.45, "small": 0.1})
    plan = instantiate(registry.get("scheduler", "energy_backtracking"), {
        "ladder": [3], "widen_deadzones": [0.6, 0.7, 0.8], "squeeze_epochs": 0.3}).run(session)
    assert dict(plan.n_levels) == {"big": 3, "small": 3}
    # the squeeze's walk (previous test), on the layers' own codes: no re-selection
    assert [(s["step"], s["layer"], s["accepted"]) for s in session.steps] == [
        ("widen-all", "*", True), ("widen-all", "*", True), ("widen-all", "*", False),
        ("widen", "big", False), ("widen", "small", True)]
    assert session.steps[-1]["deadzone"] == 0.8
    assert session.zone == {"big": 0.7, "small": 0.8} and session.applied == 0
    assert session.epochs == [0.3] * 5
    # a layer a squeeze variant already took to 0.7 sits out the steps up to 0.7
    session = ZoneSession({"big": 0.0, "small": 0.0})
    scheduler = instantiate(registry.get("scheduler", "energy_backtracking"), {
        "ladder": [3], "squeeze_margin_pct": 0.0, "widen_deadzones": [0.6, 0.7, 0.8]})
    session.zone["small"] = 0.7
    scheduler._widen(session, {"big": 3, "small": 3})
    assert session.widened == [{"big": 0.6}, {"big": 0.7}, {"big": 0.8, "small": 0.8}]


def test_session_widen_changes_the_projection_not_the_codes(lenet):
    from types import SimpleNamespace

    from dse_core.compression.compress import Session

    qnet, _ = lenet
    qnet.set_allowed("conv2", [-40, 0, 30])
    before = qnet.codes()["conv2"]
    session = SimpleNamespace(net=qnet, layer_names=list(qnet.layers))
    Session.widen(session, {"conv2": 0.8})
    assert qnet.layers["conv2"].allowed == (-40, 0, 30) and qnet.layers["conv2"].deadzone == 0.8
    after = qnet.codes()["conv2"]
    assert (after == 0).sum() > (before == 0).sum()  # more zeros ...
    assert ((after == 0) | (after == before)).all()  # ... and nothing else moved
    for bad, message in (({"conv2": 1.0}, "deadzone"), ({"conv9": 0.6}, "conv9")):
        with pytest.raises(DseError, match=message):
            Session.widen(session, bad)


def test_squeeze_options_are_checked(registry):
    for bad, message in (({"squeeze_variants": {"deadzone": 0.6}},
                          "energy_backtracking.squeeze_variants"),
                         ({"widen_deadzones": [0.7, 0.6]}, "energy_backtracking.widen_deadzones"),
                         ({"widen_deadzones": [0.5]}, "energy_backtracking.widen_deadzones"),
                         ({"widen_deadzones": 0.6}, "energy_backtracking.widen_deadzones"),
                         ({"squeeze_epochs": -1}, "energy_backtracking.squeeze_epochs"),
                         ({"squeeze_margin_pct": -1}, "energy_backtracking.squeeze_margin_pct")):
        with pytest.raises(DseError, match=message):
            instantiate(registry.get("scheduler", "energy_backtracking"), bad)


def test_distillation_pulls_the_fine_tune_towards_the_teacher():
    from dse_core.compression.compress import train_epochs

    torch.manual_seed(0)
    x = torch.randn(512, 8)
    teacher = torch.nn.Linear(8, 3)
    labels = torch.randint(0, 3, (512,))  # hard labels that disagree with the teacher
    agreement = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(1)
        student = torch.nn.Linear(8, 3)
        train_epochs(student, (x, labels), epochs=20, lr=0.05, batch_size=64, seed=0,
                     device="cpu", teacher=teacher.eval(), distill_weight=weight)
        with torch.no_grad():
            agreement[weight] = float((student(x).argmax(1) == teacher(x).argmax(1)
                                       ).float().mean())
    assert agreement[1.0] > 0.9 > agreement[0.0] + 0.3, agreement


def test_a_compress_run_squeezes_dead_zones_and_distils(tmp_path, monkeypatch, registry):
    """End to end on LeNet-5 / mnist5k: the squeeze widens every compressed layer's dead
    zone, the report, table and saved model say so, and every fine-tune after the int8
    baseline distils from a frozen copy of it."""
    import json

    from click.testing import CliRunner

    import dse_core.compression.compress as compress
    from dse_core.cli import cli
    from tests.test_compress import STUDY

    teachers, labels = [], []
    real = compress.train_epochs

    def spy(model, fit, **kw):
        teachers.append(kw.get("teacher_logits"))
        labels.append(fit[1])
        assert kw["distill_weight"] == 0.5 and kw["temperature"] == 4.0
        return real(model, fit, **kw)

    monkeypatch.setattr(compress, "train_epochs", spy)
    study = tmp_path / "s.toml"
    study.write_text(STUDY.replace(
        'scheduler = "energy_prioritized"\n'
        'scheduler_options = { ladder = [255, 8, 3], fine_tune_epochs = 0.2 }',
        'scheduler = "energy_backtracking"\n'
        'scheduler_options = { ladder = [255, 3], fine_tune_epochs = 0.05, '
        'squeeze_margin_pct = 0, squeeze_variants = [{ deadzone = 0.6 }], '
        'widen_deadzones = [0.7] }')
        .replace("accuracy_budget_pct = 2.0", "accuracy_budget_pct = 90.0")
        .replace("qat_epochs = 0.5", "qat_epochs = 0.2")
        .replace("final_epochs = 0.25", "final_epochs = 0.05")
        .replace("tune_images = 300", "tune_images = 300\ndistill_weight = 0.5"))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["compress", str(study), "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    squeeze = [s for s in report["steps"] if str(s["step"]).startswith("squeeze")]
    assert squeeze[0]["step"] == "squeeze-all" and squeeze[0]["selection"] == {"deadzone": 0.6}
    widen = [s for s in report["steps"] if str(s["step"]).startswith("widen")]
    assert widen[0]["step"] == "widen-all" and widen[0]["layer"] == "*"
    zones = {lc["layer"]: lc["deadzone"] for lc in report["layers"]}
    compressed = {lc["layer"] for lc in report["layers"] if lc["n_levels"] == 3}
    # the budget (90 points) holds whatever happens: a step is kept iff it saves energy
    squeezed = compressed if squeeze[0]["accepted"] else {
        s["layer"] for s in squeeze[1:] if s["accepted"]}
    widened = compressed if widen[0]["accepted"] else {
        s["layer"] for s in widen[1:] if s["accepted"]}
    assert widened and {n for n, z in zones.items() if z == 0.7} == widened
    assert all(zones[n] == (0.6 if n in squeezed else 0.5) for n in compressed - widened)
    assert all(zones[n] == 0.5 for n in set(zones) - compressed)
    net, _ = load_compressed(registry, out / "model.npz")
    assert {n: m.deadzone for n, m in net.layers.items()} == {
        lc["layer"]: lc["deadzone"] for lc in report["layers"]}
    header = next(line for line in result.output.splitlines() if line.startswith("layer"))
    assert header.split()[-1] == "deadzone"  # the table says which projection it used
    assert teachers[0] is None and len(teachers) > 2  # the baseline QAT has no teacher
    teacher = teachers[1]  # the baseline's logits on the fit split, computed once
    assert teacher is not None and all(t is teacher for t in teachers[1:])
    assert teacher.shape == (len(labels[1]), 10) and not teacher.requires_grad
    assert float((teacher.argmax(1) == labels[1]).float().mean()) > 0.8  # a trained teacher



def test_previews_and_energies_equal_a_full_recount_and_follow_every_write(lenet, registry):
    """``Session.preview_energy`` selects and measures only the plan's layers and reuses the
    others' energies while no weight or set changed: the same float as applying the plan,
    recounting every layer and putting it back; the network is left as it was."""
    from dse_core.compression.compress import Session, _EnergyView
    from dse_core.compression.study import load_study

    qnet, x = lenet
    rng = np.random.default_rng(0)
    guide = _EnergyView.__new__(_EnergyView)
    guide.per_weight_pj = {n: rng.random(256) * 10 for n in qnet.layers}
    selector = instantiate(registry.get("selector", "energy_accuracy"), {"keep_signs": True})
    study = load_study("studies/lenet5_backtracking.toml")
    session = Session(qnet, selector, guide, {"fit": (x, torch.zeros(len(x), dtype=torch.long))},
                      study, "cpu")
    qnet.set_allowed("conv2", [-40, 0, 30], 0.6)

    def recount() -> float:
        return sum(guide.mac_pj(qnet.codes()).values())

    def full_preview(plan) -> float:
        saved = {n: (m.allowed, m.deadzone) for n, m in qnet.layers.items()}
        session.apply(plan, fresh_sensitivity=False)
        total = recount()
        for n, (codes, zone) in saved.items():
            qnet.set_allowed(n, codes, zone)
        return total

    before = qnet.codes()
    assert session.mac_energy_pj() == recount()
    for name in qnet.layers:
        for n_levels in (3, 8, 255):
            assert session.preview_energy({name: n_levels}) == full_preview({name: n_levels})
    assert session.preview_energy({"conv1": 3, "fc1": 4}) == full_preview({"conv1": 3, "fc1": 4})
    assert all((qnet.codes()[n] == c).all() for n, c in before.items())
    assert qnet.layers["conv2"].allowed == (-40, 0, 30) and qnet.layers["conv2"].deadzone == 0.6
    snapshot = session.snapshot()
    w = qnet.layers["conv1"].weight

    def nudge() -> None:  # an in-place write, as an optimiser step makes
        with torch.no_grad():
            w.add_(torch.randn_like(w) * w.abs().mean())

    for write in (nudge,
                  lambda: qnet.set_allowed("fc1", [-50, 0, 60]),         # a new set
                  lambda: session.widen({"conv2": 0.8}),                 # a wider zone
                  lambda: session.restore(snapshot)):                    # load_state_dict
        old = session.mac_energy_pj()
        write()
        assert session.mac_energy_pj() == recount() != old
        assert session.energy_shares() == {n: e / recount()
                                           for n, e in guide.mac_pj(qnet.codes()).items()}
