"""The full profile's runs as they are built, checked on the CPU: model, parameter count, optimiser,
schedule, augmentation and phases, then a few training steps of each on a few images. Nothing else
runs the full profile's code without a GPU; a defect in a full-only path (five FlexibleCNN blocks,
momentum cycling, a second phase, random erasing, another test normalisation) shows up here."""

import pytest
import torch

from helpers import studies
from helpers.data import make_synthetic
from helpers.loader import Augment
from helpers.models import build_model, count_parameters
from helpers.profiles import settings
from helpers.train import fit, make_optimizer, make_scheduler

STUDIES = list(studies.STUDIES)

# study -> variant -> (parameters as each report or its code counts them, phases, epochs per phase)
EXPECTED = {
    "stress_test": {"plain": (7_427_914, 1, [40]), "residual": (7_427_914, 1, [40])},
    "cutmix_study": {"baseline": (11_220_132, 1, [50]), "cutmix": (11_220_132, 1, [50])},  # 100 classes
    "resnet_budget": {"budget": (4_754_218, 2, [100, 100])},
    "worksheet_analysis": {"exp1": (11_173_962, 1, [25]), "exp2": (11_173_962, 1, [25])},
    "bn_ablation": {"baseline": (620_362, 1, [30]), "batchnorm": (621_322, 1, [30])},
}
CLASSES = {"cifar10": 10, "cifar100": 100}


def test_every_study_is_checked():
    assert set(EXPECTED) == set(STUDIES)


@pytest.mark.parametrize("study", STUDIES)
def test_full_runs_are_built_as_the_protocol_says(study):
    S = settings(study, "full")
    runs = S.runs()
    assert {v: len(c) for v, c in runs.items()} == {v: 1 for v in EXPECTED[study]}
    for variant, (params, n_phases, epochs) in EXPECTED[study].items():
        config = runs[variant][0]
        assert len(config.phases) == n_phases and [p.epochs for p in config.phases] == epochs
        with torch.device("meta"):
            model = build_model(config.model, CLASSES[S.study.dataset], width=config.width, **config.model_kwargs)
        assert config.width == 1 and count_parameters(model) == params
        for phase in config.phases:
            Augment(**phase.augment)  # a valid augmentation
            opt = make_optimizer(torch.nn.Linear(1, 1), phase)
            assert opt.defaults["momentum"] == phase.momentum == 0.9 and opt.defaults["weight_decay"] == 5e-4


def schedule_trace(config, steps_per_epoch: int) -> list[tuple[float, float]]:
    opt = make_optimizer(torch.nn.Linear(1, 1), config)
    sched = make_scheduler(opt, config, steps_per_epoch)
    out = []
    for _ in range(config.epochs * (steps_per_epoch if config.step_per == "batch" else 1)):
        out.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
        opt.step()
        sched.step()
    return out


def test_report_000s_schedule_as_its_code_ran_it():
    config = settings("stress_test", "full").runs()["plain"][0]
    trace = schedule_trace(config, 704)  # 45,000 images in batches of 64
    lr, momentum = zip(*trace)
    assert lr[0] == pytest.approx(0.0004) and max(lr) == pytest.approx(0.01)
    assert momentum[0] == pytest.approx(0.95) and min(momentum) == pytest.approx(0.85)
    assert lr[-1] == pytest.approx(0.01 / 25 / 1e4, rel=0.05)


def test_report_002s_two_phases_as_its_code_ran_them():
    first, second = settings("resnet_budget", "full").runs()["budget"][0].phases
    lr1 = [lr for lr, _ in schedule_trace(first, 1)]
    assert lr1[0] == 0.1 and lr1[49] == 0.1 and lr1[50] == pytest.approx(0.01) and lr1[75] == pytest.approx(0.001)
    lr2 = [lr for lr, _ in schedule_trace(second, 1)]
    assert lr2[0] == 0.01 and lr2[1] == pytest.approx(0.009998, abs=1e-6)  # the code's log: 0.009998 after epoch 1
    aug = Augment(**second.augment)
    assert (aug.crop_padding, aug.flip_h, aug.flip_v, aug.blur_p, aug.erase_p) == (4, 0.5, 0.05, 0.3, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_full_runs_train_a_few_steps_on_the_cpu(study, tmp_path):
    """Each run exactly as built (its phases shortened to one epoch) on a few images: 2-3 steps each."""
    S = settings(study, "full", device="cpu")
    data = make_synthetic(n_train=300, n_test=64, seed=0)  # 10 classes; the heads are built for them
    for variant, [config] in S.runs().items():
        short = config.replace(epochs=1, start_from=config.start_from and config.start_from.replace(epochs=1))
        run = fit(short, data, root=tmp_path, progress=False)
        split = short.eval_split
        assert len(run.history) == 1 and torch.isfinite(torch.tensor(run.history[f"{split}_loss"].to_numpy())).all()
        assert (run.previous is not None) == (config.start_from is not None), variant
        assert count_parameters(run.model) == count_parameters(build_model(short.model, 10, **short.model_kwargs))
