# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Confidently wrong: what CutMix and label smoothing change in a ResNet-18
#
# A network that overfits does not only get more test images wrong; it also becomes *sure* of its
# wrong answers, and a sure wrong answer cannot be caught by a confidence threshold. This notebook
# trains ResNet-18 twice on the same data with the same schedule. The second run changes one thing:
# half of its training batches are CutMix batches (a rectangle of another image is pasted in and
# the label is mixed by area) and its targets are smoothed by 0.1. We then look past the accuracy at
# the confident failures, what Grad-CAM says drove them, how confidence is distributed on right and
# wrong answers, and how well each model's confidence matches its accuracy.
#
# This reproduces report 001 of the reference set (ResNet-18 with a 3x3 stem and no max-pool,
# trained from scratch on CIFAR-100: 45k/5k/10k images, 50 epochs, SGD at 0.1 divided by 10 at
# epochs 25 and 40, crop and flip, seed 42; CutMix with alpha 1 applied to half of the batches).
# The `quick` default runs a narrow ResNet-18 for a few epochs on the bundle's 10-class synthetic
# data on a laptop CPU; `full` is the report's protocol and wants a GPU.

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from helpers import cam, confidence
from helpers import evaluate as ev
from helpers import page, plots
from helpers.models import build_model, count_parameters
from helpers.profiles import describe, settings
from helpers.train import fit, norm_stats

# %% tags=["parameters"]
profile = "quick"       # smoke | quick | full
dataset = None          # None: the profile's dataset (synthetic for smoke/quick, CIFAR-100 for full)
seed = None             # None: the report's seed (42)
device = "auto"         # auto | cpu | cuda | mps
output_dir = "../reports/interactive/02_cutmix_study"  # figures/ and metrics.json go here
epochs = None           # None: the profile's number of epochs
n_cases = 5             # confident failures studied one by one (the report's five)
reject_below = 0.7      # confidence threshold of the rejection example (the report's 70%)

# %%
S = settings("cutmix_study", profile, dataset=dataset, seed=seed, device=device, epochs=epochs)
if not 1 <= n_cases <= 20:
    raise ValueError(f"n_cases must be between 1 and 20, not {n_cases!r}")
if not 0 < reject_below < 1:
    raise ValueError(f"reject_below must be a confidence in (0, 1), not {reject_below!r}")
data = S.load_data()
figs = page.Figures(output_dir)
plots.style()
print(describe(S))
print(data)

# %% [markdown]
# ## Two runs that differ in one place
#
# Both runs share every setting shown above: model, data split (a fixed 90/10 split of the
# training images into train and validation), augmentation (random crop with 4 pixels of padding,
# horizontal flip), optimiser, learning-rate steps and seed. The CutMix run adds CutMix
# (Beta(1, 1) box area, box centre uniform over the image, lambda recomputed after clipping at the
# border, applied to a batch with probability 0.5) and label smoothing 0.1, nothing else.
# Model size, for reference:

# %%
base = S.train.replace(name="cutmix_study-baseline")
mixed = base.replace(name="cutmix_study-cutmix", label_smoothing=S.extra["label_smoothing"],
                     mix=dict(kind="cutmix", alpha=S.extra["cutmix_alpha"], p=S.extra["cutmix_p"]))
pd.DataFrame({
    "parameters (this run)": count_parameters(build_model(base.model, data.num_classes, width=base.width)),
    "parameters (report: width 1, 100 classes)": count_parameters(build_model(base.model, 100)),
}, index=[base.model])

# %% [markdown]
# ## 1. The baseline
#
# Training (solid) and validation (dotted) loss and accuracy per epoch; the dashed lines mark the
# learning-rate drops. Runs are cached under `data/runs/`, so a second execution loads them.
# What to look for: a training curve that keeps improving while the validation curve stalls or, for
# the loss, turns upwards after a learning-rate drop. That divergence is memorisation.

# %%
runs = {"baseline": fit(base, data)}
figs.save(plots.training_curves({"baseline": runs["baseline"].history}, "loss", lr_steps=list(base.milestones)),
          "baseline_loss_curves")
figs.save(plots.training_curves({"baseline": runs["baseline"].history}, "acc", lr_steps=list(base.milestones)),
          "baseline_accuracy_curves")

# %%
mean, std = norm_stats(base, data)  # the normalisation both models were trained with
preds = {"baseline": ev.predict(runs["baseline"].model, data.test_images, data.test_labels, mean=mean, std=std)}
gaps = {"baseline": ev.train_val_gap(runs["baseline"].history)}
h = runs["baseline"].history.iloc[-1]
display(Markdown(
    f"After {len(runs['baseline'].history)} epochs the baseline reaches **{h['train_acc']:.1%}** on its training "
    f"batches and **{h['val_acc']:.1%}** on validation, a gap of **{100 * gaps['baseline']:.1f} points**; on the "
    f"test split it scores **{ev.accuracy(preds['baseline'].pred, data.test_labels):.2%}** "
    f"(report 001 on CIFAR-100: 99.8% train, about 60% validation, 60.69% test)."))

# %% [markdown]
# ## 2. Where the baseline is confidently wrong
#
# All misclassified test images ranked by the probability the baseline gave its wrong answer. From
# that ranking we pick the cases to study automatically rather than by hand: greedily the most
# confident failure whose true class is not yet among the picked ones (`evaluate.pick_diverse`), so
# the cases cover different confusions. Titles: test index, true class, prediction, confidence.

# %%
fail = {"baseline": ev.failures(preds["baseline"], data.classes)}
cases = ev.pick_diverse(fail["baseline"], k=n_cases)
case_idx = np.array(cases["index"], dtype=np.int64)
if len(cases):
    figs.save(plots.failure_grid(data.test_images, cases, n=len(cases), cols=len(cases),
                                 suptitle="baseline: confident failures picked for study"), "baseline_cases")
pair_counts = fail["baseline"].groupby(["true", "pred"]).size()
pd.DataFrame({
    "test index": cases["index"], "true": cases["true_name"], "predicted": cases["pred_name"],
    "confidence": cases["confidence"].map("{:.1%}".format),
    "failures with this pair": [int(pair_counts[(t, p)]) for t, p in zip(cases["true"], cases["pred"])],
}).set_index("test index")

# %% [markdown]
# The last column counts how many of the baseline's failures make the same (true, predicted)
# confusion. A confusion made hundreds of times is systematic (look-alike classes); one made a
# handful of times more likely comes from something in that particular image, such as a dominant
# background.
#
# ## 3. What the baseline looked at
#
# Grad-CAM of the wrong predicted class on the last residual stage (`layer4`, as in the report):
# bright regions are where the evidence *for the wrong answer* sits. One row per case: the image,
# the heatmap and the overlay.

# %%
if len(case_idx):
    case_images = data.test_images[case_idx]
    cams_before = cam.compute_cams(runs["baseline"].model, case_images, mean=mean, std=std,
                                   targets=preds["baseline"].pred[case_idx])
    row_titles = [f"#{i}\ntrue {data.classes[data.test_labels[i]]}" for i in case_idx]
    figs.save(plots.cam_rows(case_images, {"baseline": cams_before},
                             {"baseline": cam.overlay(case_images, cams_before)}, row_titles,
                             {"baseline": [f"pred {data.classes[preds['baseline'].pred[i]]}" for i in case_idx]}),
              "gradcam_baseline_failures")
    if data.test_masks is not None:
        on_object = cam.energy_in_mask(cams_before, data.test_masks[case_idx])
        display(Markdown("Share of each heatmap inside the object mask (synthetic data only; a heatmap spread "
                         "evenly would score the object's area): "
                         + ", ".join(f"#{i}: {e:.0%} (object {a:.0%})" for i, e, a in
                                     zip(case_idx, on_object, data.test_masks[case_idx].float().mean((1, 2))))
                         + "."))

# %% [markdown]
# Read blobs, not pixels: the last stage works on a 4x4 grid that is upsampled to the image. The
# report's reading of its CIFAR-100 maps was that the wrong answer comes from whatever texture
# covers most of the image (a gravel path read as "road", green grass as "plain"). On the synthetic
# data a heatmap on the background rather than on the shape is the same story.
#
# ## 4. The CutMix run
#
# Same curves for the run with CutMix and label smoothing. Two things change by construction: the
# training accuracy is measured on mixed batches, whose labels no single answer can fully match, and
# the smoothed targets keep the loss from approaching zero. The train-validation gap is the number
# to compare.

# %%
runs["cutmix"] = fit(mixed, data)
histories = {name: run.history for name, run in runs.items()}
figs.save(plots.training_curves(histories, "loss", lr_steps=list(base.milestones)), "loss_curves")
figs.save(plots.training_curves(histories, "acc", lr_steps=list(base.milestones)), "accuracy_curves")

# %% [markdown]
# ## 5. The numbers side by side
#
# Accuracy on the test split, how many test images each model gets wrong, the final
# train-validation gap, how many wrong answers come with at least 90% and 99% confidence, and the
# mean confidence on wrong and on right answers.

# %%
preds["cutmix"] = ev.predict(runs["cutmix"].model, data.test_images, data.test_labels, mean=mean, std=std)
gaps["cutmix"] = ev.train_val_gap(runs["cutmix"].history)
summary = {name: confidence.confidence_summary(p) | {"train-val gap": gaps[name]} for name, p in preds.items()}
rows = {"test accuracy (%)": "accuracy", "total wrong": "wrong", "train-val gap (points)": "train-val gap",
        "wrong with conf >= 90%": "wrong >= 0.9", "wrong with conf >= 99%": "wrong >= 0.99",
        "mean conf on wrong (%)": "mean_conf_wrong", "mean conf on right (%)": "mean_conf_right"}
scale = {k: 100 if "%" in k or "points" in k else 1 for k in rows}
metrics_table = pd.DataFrame({name: [summary[name][key] * scale[row] for row, key in rows.items()]
                              for name in preds}, index=list(rows))
metrics_table["change"] = metrics_table["cutmix"] - metrics_table["baseline"]
metrics_table.round(2)

# %%
acc = {name: s["accuracy"] for name, s in summary.items()}


def drop(key):
    before, after = summary["baseline"][key], summary["cutmix"][key]
    return f"{before} → {after}" + (f" ({100 * (after - before) / before:+.0f}%)" if before else "")


display(Markdown(
    f"Test accuracy moves from **{acc['baseline']:.2%}** to **{acc['cutmix']:.2%}** "
    f"(**{100 * (acc['cutmix'] - acc['baseline']):+.2f} points**; report 001: 60.69% → 75.70%, +15.01). "
    f"Wrong answers with at least 90% confidence: **{drop('wrong >= 0.9')}**; with at least 99%: "
    f"**{drop('wrong >= 0.99')}** (report: 315 → 44 and 54 → 1). The train-validation gap goes from "
    f"{100 * gaps['baseline']:.1f} to {100 * gaps['cutmix']:.1f} points."))

# %% [markdown]
# Validation images come from the training distribution, test images may not. On the synthetic
# data they differ on purpose: in training most images of a class sit on one background texture,
# on the test split backgrounds are random. The drop from validation to test accuracy therefore
# measures how much a model relies on the background.

# %%
val_acc = {name: float(run.history["val_acc"].iloc[-1]) for name, run in runs.items()}
drops = {name: 100 * (val_acc[name] - acc[name]) for name in runs}
display(pd.DataFrame({"validation acc (%)": {n: 100 * v for n, v in val_acc.items()},
                      "test acc (%)": {n: 100 * a for n, a in acc.items()},
                      "validation - test (points)": drops}).round(2))
if data.test_masks is not None and drops["cutmix"] > drops["baseline"] + 5:
    display(Markdown(
        f"Here the CutMix model loses **{drops['cutmix']:.1f} points** from validation to test, the baseline "
        f"**{drops['baseline']:.1f}**: CutMix made the model lean *more* on the background, the opposite of the "
        "report's finding. The reason is in how CutMix labels a mixed image: by the *area* each image keeps. A "
        "synthetic object covers about a fifth of the image, so a pasted box mostly carries the other image's "
        "background, and the mixed label then rewards the model for reading the background. On CIFAR the "
        "object usually fills most of the frame and area is a fair proxy for evidence. This is a known limit of "
        "CutMix on small objects; variants that weight the label by saliency instead of area address it."))

# %% [markdown]
# ## 6. The studied cases, before and after
#
# For each picked failure: the baseline's answer, the CutMix model's answer, and what changed:
# *corrected*, *still wrong* with more or less confidence in the same wrong class, or wrong with
# *another class*.

# %%
cmp = ev.compare_cases(case_idx, preds["baseline"], preds["cutmix"], data.classes)
pd.DataFrame({
    "test index": cmp["index"], "true": cmp["true_name"],
    "baseline": [f"{n} ({c:.1%})" for n, c in zip(cmp["pred_a_name"], cmp["conf_a"])],
    "cutmix": [f"{n} ({c:.1%})" for n, c in zip(cmp["pred_b_name"], cmp["conf_b"])],
    "change": cmp["change"],
}).set_index("test index")

# %% [markdown]
# Grad-CAM before (left triplet) and after (right triplet) for the cases the CutMix model still
# gets wrong, each map explaining that model's own wrong answer. The report saw the CutMix model's
# attention spread over more of the image instead of locking onto one region.

# %%
still = cmp[cmp["change"].str.startswith("still wrong")]
still_idx = np.array(still["index"], dtype=np.int64)
if len(still_idx):
    imgs = data.test_images[still_idx]
    cams_pair = {name: cam.compute_cams(runs[name].model, imgs, mean=mean, std=std, targets=preds[name].pred[still_idx])
                 for name in runs}
    figs.save(plots.cam_rows(imgs, cams_pair, {n: cam.overlay(imgs, c) for n, c in cams_pair.items()},
                             [f"#{i}\ntrue {data.classes[data.test_labels[i]]}" for i in still_idx],
                             {n: [f"pred {data.classes[preds[n].pred[i]]} {preds[n].conf[i]:.0%}" for i in still_idx]
                              for n in runs}),
              "gradcam_before_after")
    # how concentrated each map is: the share of the image above half of the map's peak
    spread = {n: float((c >= 0.5).mean()) for n, c in cams_pair.items()}
    display(Markdown(f"Share of the image where the heatmap is above half its peak, averaged over these cases: "
                     f"baseline **{spread['baseline']:.0%}**, CutMix **{spread['cutmix']:.0%}** "
                     f"(larger: attention spread over more of the image)."))
else:
    spread = None
    display(Markdown("The CutMix model corrects every studied case, so there is no before/after Grad-CAM to show."))

# %% [markdown]
# ## 7. How confident are right and wrong answers?
#
# Histograms of the confidence (the probability of the predicted class) on wrong answers (left)
# and right answers (right). The healthy pattern is low confidence on the left and high confidence
# on the right: a model that knows when it is guessing. A peak near 1.0 on the left is the
# dangerous kind of error.

# %%
figs.save(plots.confidence_histograms(preds), "confidence_histograms")

# %% [markdown]
# The same information as counts at the thresholds 0.5, 0.7, 0.9 and 0.99: how many wrong answers
# would pass a filter that accepts everything above the threshold.

# %%
by_threshold = pd.DataFrame({name: confidence.wrong_by_confidence(p) for name, p in preds.items()})
figs.save(plots.wrong_by_threshold(by_threshold), "wrong_by_threshold")
by_threshold["reduction (%)"] = (100 * (1 - by_threshold["cutmix"] / by_threshold["baseline"].replace(0, np.nan))).round(1)
by_threshold

# %% [markdown]
# ## 8. Who gained: classes and samples
#
# Per-class test accuracy change (CutMix minus baseline), sorted; green bars gained, red lost.

# %%
per_class = {name: ev.per_class_accuracy(p.pred, data.test_labels, data.num_classes) for name, p in preds.items()}
delta = per_class["cutmix"] - per_class["baseline"]
figs.save(plots.per_class_change(delta, data.classes, "Per-class test accuracy change, CutMix - baseline"),
          "per_class_change")
order = np.argsort(-delta)
display(Markdown(
    f"**{int((delta >= 0).sum())} of {data.num_classes}** classes improve or stay level (report: 98 of 100). "
    f"Most improved: " + ", ".join(f"*{data.classes[i]}* {100 * delta[i]:+.1f}" for i in order[:3])
    + "; least improved: " + ", ".join(f"*{data.classes[i]}* {100 * delta[i]:+.1f}" for i in order[::-1][:3])
    + " (points)."))

# %% [markdown]
# Sample migration: test images corrected by the change, images it broke (regressed), and, among
# the images both models get wrong, how many the CutMix model is less sure about.

# %%
moved = ev.migration(preds["baseline"], preds["cutmix"])
figs.save(plots.migration_bars({"corrected": moved["corrected"], "regressed": moved["regressed"],
                                "wrong in both": moved["still_wrong"],
                                "... with lower confidence": moved["still_wrong_less_confident"]}),
          "sample_migration")
display(Markdown(
    f"**{moved['corrected']:,}** corrected and **{moved['regressed']:,}** regressed: a net change of "
    f"**{moved['net']:+,}** images (report: 1,938 and 437, +1,501). Of the {moved['still_wrong']:,} images wrong "
    f"in both, **{moved['share_less_confident']:.1%}** get a lower confidence from the CutMix model "
    f"(report: 57.5% of 1,993)."))

# %% [markdown]
# ## 9. Calibration and selective prediction
#
# Report 001 argues that CutMix makes a confidence threshold usable. Two standard views test that.
# A **reliability diagram** bins the test predictions by confidence and plots each bin's accuracy:
# a calibrated model's bars touch the diagonal; bars below it are overconfident (the hatched part
# is the gap). The **expected calibration error** (ECE) is the average gap weighted by the number
# of predictions in each bin (15 bins).

# %%
calib = {name: confidence.calibration(p, bins=15) for name, p in preds.items()}
ece = {name: e for name, (_, e) in calib.items()}
figs.save(plots.reliability_diagrams(calib), "reliability_diagrams")

# %% [markdown]
# A **risk-coverage curve** sorts the predictions by confidence and asks: if we answer only the
# most confident fraction (the coverage) and hand the rest to a person, how accurate are the
# answers we give? A model whose confidence ranks its errors well keeps a high accuracy until the
# coverage is large. The dots mark the report's rule "reject anything below 70%".

# %%
curves = {name: confidence.risk_coverage(p) for name, p in preds.items()}
figs.save(plots.risk_coverage_curves(curves, mark=reject_below), "risk_coverage")
kept = {name: confidence.accuracy_at_threshold(p, reject_below) for name, p in preds.items()}
pd.DataFrame({name: {"ECE (%)": 100 * ece[name], f"kept at conf >= {reject_below:g} (%)": 100 * kept[name][0],
                     "accuracy on kept (%)": 100 * kept[name][1]} for name in preds}).T.round(2)

# %%
display(Markdown(
    f"ECE goes from **{100 * ece['baseline']:.1f}%** to **{100 * ece['cutmix']:.1f}%**. Answering only when the "
    f"confidence is at least {reject_below:.0%}, the baseline answers {kept['baseline'][0]:.0%} of the test images "
    f"with {kept['baseline'][1]:.1%} accuracy and the CutMix model {kept['cutmix'][0]:.0%} with "
    f"{kept['cutmix'][1]:.1%} accuracy."))

# %% [markdown]
# ## Conclusion

# %%
fixed = int((cmp["change"] == "corrected").sum())
display(Markdown(f"""
* **Accuracy.** {acc['baseline']:.2%} → {acc['cutmix']:.2%} ({100 * (acc['cutmix'] - acc['baseline']):+.2f} points),
  {moved['corrected']:,} test images corrected and {moved['regressed']:,} broken.
* **Overfitting.** The final train-validation gap goes from {100 * gaps['baseline']:.1f} to
  {100 * gaps['cutmix']:.1f} points.
* **Confident errors.** Wrong with at least 99% confidence: {drop('wrong >= 0.99')}; at least 90%:
  {drop('wrong >= 0.9')}. Mean confidence on wrong answers: {summary['baseline']['mean_conf_wrong']:.1%} →
  {summary['cutmix']['mean_conf_wrong']:.1%}; on right answers: {summary['baseline']['mean_conf_right']:.1%} →
  {summary['cutmix']['mean_conf_right']:.1%}.
* **Calibration.** ECE {100 * ece['baseline']:.1f}% → {100 * ece['cutmix']:.1f}%.
* **The {len(cmp)} studied cases.** {fixed} corrected; {len(cmp) - fixed} still wrong.
* **Validation to test.** Accuracy drops by {drops['baseline']:.1f} points (baseline) and {drops['cutmix']:.1f}
  points (CutMix) from the validation to the test split.
"""))
if acc["cutmix"] <= acc["baseline"]:
    display(Markdown(
        "**Against the report.** In this run CutMix did not improve test accuracy (report 001: +15.01 points). "
        "The report's gain comes from stopping a 50-epoch ResNet-18 from memorising CIFAR-100; with the few "
        "epochs of this profile the baseline has not started to memorise, while CutMix, which makes every "
        "mixed batch harder, needs more epochs to converge. See also the validation-to-test drop above."))

# %% [markdown]
# What to take away: the interesting effect of a regulariser like CutMix is not only the accuracy
# it adds but where the remaining errors sit on the confidence scale. Compare the two histograms of
# wrong answers and the two reliability diagrams: a model whose mistakes come with low confidence
# can be deployed behind a threshold, one whose mistakes look as certain as its right answers
# cannot. Keep two caveats in mind. Label smoothing by itself lowers every confidence, so part of
# the calibration change belongs to it, not to CutMix; separating the two needs a third run. And
# some errors no training trick removes: at 32x32 pixels some classes are simply not separable
# (the report's lobster and crab). On the `quick` profile this is one seed of a narrow network on
# synthetic data, for direction only.

# %%
page.write_metrics(output_dir, {
    "profile": profile, "dataset": S.dataset, "epochs": base.epochs, "width": base.width,
    "test_acc_baseline": acc["baseline"], "test_acc_cutmix": acc["cutmix"],
    "gain_points": 100 * (acc["cutmix"] - acc["baseline"]),
    "train_val_gap_baseline": gaps["baseline"], "train_val_gap_cutmix": gaps["cutmix"],
    "summary": summary, "ece": ece, "migration": moved,
    "case_indices": [int(i) for i in cmp["index"]], "case_changes": list(cmp["change"]),
    "cam_spread": spread, "val_acc": val_acc, "val_test_drop_points": drops,
}, figs)
