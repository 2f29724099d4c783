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

# %% [markdown] tags=["remove-cell"]
# # 02 · Confidently wrong: what CutMix and label smoothing change in a ResNet-18
#
# Run it top to bottom (or headless: `make reports`); the report hides this notebook's code.

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from helpers import cam, confidence, evidence, explorer, page, plots, study
from helpers import evaluate as ev
from helpers.models import build_model, count_parameters
from helpers.protocol import protocol_card
from helpers.studies import cutmix_study

# %% tags=["parameters"]
profile = "quick"       # smoke | quick | full
dataset = None          # None: the profile's (quick, full: CIFAR-100 if in data/ or downloadable, else synthetic)
seeds = 1               # training seeds per model: k (the report's seed, then the next k-1) or "1,2,3"
seed = None             # None: the report's seed (42), the first of the seeds
device = "auto"         # auto | cpu | cuda | mps
precision = None        # None: fp32, as the report; "bf16" on a CUDA GPU is faster but not the report's
output_dir = "../reports/interactive/02_cutmix_study"  # figures/ and metrics.json go here
epochs = None           # None: the profile's number of epochs
n_train = None          # None: the profile's training images (quick: a subset; full: all)
n_test = None           # None: the profile's test images
n_cases = 5             # confident failures studied one by one (the report's five)
reject_below = 0.7      # confidence threshold of the rejection example (the report's 70%)
neighbours = 5          # nearest training images per studied failure, in the model's feature space

# %%
if not 1 <= n_cases <= 20 or not 0 < reject_below < 1:
    raise ValueError(f"need 1 <= n_cases <= 20 and 0 < reject_below < 1, got {n_cases!r}, {reject_below!r}")
S, data, head, figs = study.begin("cutmix_study", output_dir, profile=profile, dataset=dataset, seeds=seeds,
                                  seed=seed, device=device, precision=precision, epochs=epochs, n_train=n_train,
                                  n_test=n_test)

# %% [markdown]
# A network that overfits does not only get more test images wrong: it also becomes *sure* of its
# wrong answers, and a sure wrong answer slips past any confidence threshold. This study trains a
# ResNet-18 twice on the same data with the same schedule and seeds. The second run changes one
# thing: half of its training batches are CutMix batches (a rectangle of another image is pasted
# in and the label is mixed by the area each image keeps), and its targets are smoothed by 0.1.
# The comparison goes past the accuracy: how many answers are wrong *and* confident, what the
# baseline looked at when it was confidently wrong, how well each model's confidence matches its
# accuracy, and which errors a confidence threshold would catch. It follows reference report 001
# (CIFAR-100, 50 epochs); the protocol card lists every setting of this run against the report's.

# %% [markdown]
# ## The protocol
#
# Each row is one setting: what report 001 says, what this run uses, and a mark. *same* is the
# report's value; *chosen* fills a gap the report leaves (the reason is given); *scaled* is a
# smaller value of the quick or smoke profile; *changed* is a value set by hand for this run.

# %%
figs.table(protocol_card(S, data), "protocol", "This run's settings against report 001's.")

# %% [markdown]
# ## 1. Two runs that differ in one place
#
# Both runs share the model (ResNet-18 with a 3x3 stem and no max-pool), the split of the training
# images into training and validation parts, the augmentation, optimiser, learning-rate steps and
# seeds. The CutMix run adds CutMix (box area drawn from Beta(1, 1), box centre uniform, lambda
# recomputed after clipping at the border, applied to a batch with probability 0.5) and label
# smoothing 0.1. CutMix adds no parameters:

# %%
params = {"this run": count_parameters(build_model(S.config.model, data.num_classes, width=S.config.width)),
          "report's width 1, 100 classes": count_parameters(build_model(S.config.model, 100))}
figs.table({"parameters": params}, "parameters", "Parameters of the ResNet-18 (both runs).", formats="{:,}")

# %% [markdown]
# ## 2. Training
#
# Both models are trained once per seed; trained runs are cached under `data/runs/`, so a second
# execution loads them. Training loss (solid) and validation loss (dotted) per epoch; dashed lines
# mark the learning-rate drops. What to look for: a training curve that keeps falling while the
# validation curve stalls or, after a drop, turns upwards. That divergence is memorisation. The
# CutMix run's training loss cannot approach zero: its mixed batches have soft labels, and the
# smoothed targets keep some probability off the true class.

# %%
runs = study.train(S, data)
first = {name: variant_runs[0].history for name, variant_runs in runs.items()}
lr_steps = list(S.config.milestones)
figs.show(plots.training_curves(first, "loss", lr_steps=lr_steps), "loss_curves",
          f"Training (solid) and validation (dotted) loss per epoch, seed {S.seeds[0]}. Dashed: learning-rate drops.")

# %% [markdown]
# The same runs in accuracy. Training accuracy is measured on the augmented training batches (for
# CutMix, partly mixed ones that no single answer matches), so the gap to validation is larger
# than what the model fits beyond what generalises; the report read its baseline's 40-point gap as
# memorisation.

# %%
figs.show(plots.training_curves(first, "acc", lr_steps=lr_steps), "accuracy_curves",
          f"Training (solid) and validation (dotted) accuracy per epoch, seed {S.seeds[0]}.")
last = {name: h.iloc[-1] for name, h in first.items()}
figs.table({name: {"train acc (%)": 100 * r["train_acc"], "validation acc (%)": 100 * r["val_acc"],
                   "train - validation (points)": 100 * (r["train_acc"] - r["val_acc"])} for name, r in last.items()},
           "train_val_gap", f"Last epoch, seed {S.seeds[0]}. Report 001: {S.study.reported['train_val_gap']}.",
           digits=1)

# %% [markdown]
# ## 3. Test accuracy, against the report
#
# Both models are tested with their last epoch's weights on the same test images. The difference
# comes with a 95% interval and a test of whether it could be chance (one seed: a paired bootstrap
# over test images and McNemar's exact test on the images only one model gets right; several
# seeds: a paired t-test over seeds, and a figure with each seed's accuracy as a point). The verdict
# sets the result against the report's +15.01 points.

# %%
preds = study.predict(runs, data, S)
result = study.accuracy_verdict(S, preds, data, figs)

# %% [markdown]
# ## 4. Confident errors, counted with their uncertainty
#
# Report 001's strongest claim is about the *confident* errors: 315 wrong answers with at least
# 90% confidence became 44, and 54 with at least 99% became 1. The table counts them here, at each
# threshold, on the same test images for both models. A count falls only if CutMix moves images
# out of it, so each row is a paired comparison: the interval is in images, and the p-value tests
# whether CutMix is as likely to push an image over the threshold as below it (McNemar). The
# report's counts are of 10,000 test images; this run's test split may be smaller.

# %%
p0 = {name: plist[0] for name, plist in preds.items()}
errors, error_stats = confidence.confident_errors(preds["baseline"], preds["cutmix"], ("baseline", "CutMix"),
                                                  reported=S.study.reported["wrong_by_confidence"])
figs.table(errors, "confident_errors", "Wrong answers at or above each confidence, CutMix minus baseline: with "
           "one seed on its test images, with several the mean over seeds (the test column says which).", digits=1)

# %% [markdown]
# The same counts as bars (first seed): how many wrong answers a filter that accepts everything
# above the threshold would let through.

# %%
by_threshold = {name: confidence.wrong_by_confidence(p) for name, p in p0.items()}
figs.show(plots.wrong_by_threshold(pd.DataFrame(by_threshold)), "wrong_by_threshold",
          f"Wrong answers with confidence at or above each threshold, seed {S.seeds[0]}.")

# %% [markdown]
# ## 5. How confident are right and wrong answers?
#
# Histograms of the confidence (the probability of the predicted class) on wrong answers (left)
# and right answers (right). The healthy pattern is low confidence on the left and high confidence
# on the right: a model that knows when it is guessing. A peak near 1.0 on the left is the
# dangerous kind of error, the one the report found 54 times in its baseline.

# %%
figs.show(plots.confidence_histograms(p0), "confidence_histograms",
          f"Confidence of wrong (left) and right (right) test answers, seed {S.seeds[0]}: mass near 1.0 on the "
          "left is confidently wrong.", key=True)

# %% [markdown]
# A **reliability diagram** bins the test predictions by confidence and plots each bin's accuracy:
# a calibrated model's bars touch the diagonal; bars below it are overconfident (the hatched part
# is the gap). The **expected calibration error** (ECE) is that gap averaged over the predictions
# (15 bins). The table gives each model's ECE and the difference with a paired bootstrap interval
# (the same resampled test images for both models).

# %%
calib = {name: confidence.calibration(p, bins=15) for name, p in p0.items()}
figs.show(plots.reliability_diagrams(calib), "reliability_diagrams",
          f"Accuracy against confidence in 15 bins, seed {S.seeds[0]}; hatched: the gap to the bin's confidence.")
ece = confidence.ece_difference(p0["baseline"], p0["cutmix"])
figs.table({"ECE (%)": {"baseline": 100 * ece.mean_a, "CutMix": 100 * ece.mean_b, "difference": 100 * ece.diff,
                        "95% interval": evidence.format_interval([100 * c for c in ece.ci]),
                        "p": evidence.format_p(ece.p_value), "test": ece.test}},
           "ece", f"Expected calibration error, CutMix minus baseline, seed {S.seeds[0]}.", digits=2)

# %% [markdown]
# Label smoothing by itself lowers every confidence, so part of any calibration change belongs to
# it and not to CutMix; this study does not run the third model (label smoothing alone) that would
# separate the two.
#
# ## 6. Answering only when sure
#
# Report 001 argues that CutMix makes a confidence threshold usable ("reject anything below
# 70%"). A **risk-coverage curve** sorts the predictions by confidence and asks: if the model
# answers only its most confident fraction (the coverage) and hands the rest to a person, how
# accurate are the answers it gives? The dots mark the threshold `reject_below`.

# %%
curves = {name: confidence.risk_coverage(p) for name, p in p0.items()}
figs.show(plots.risk_coverage_curves(curves, mark=reject_below), "risk_coverage",
          f"Accuracy of the kept answers against the share kept, seed {S.seeds[0]}; dots: confidence >= "
          f"{reject_below:g}.")
kept = {name: confidence.accuracy_at_threshold(p, reject_below) for name, p in p0.items()}
figs.table({name: {"kept (%)": 100 * k[0], "accuracy on kept (%)": 100 * k[1]} for name, k in kept.items()},
           "rejection", f"Answers kept at confidence >= {reject_below:g} and their accuracy, seed {S.seeds[0]}.",
           digits=1)

# %% [markdown]
# ## 7. Where the baseline is confidently wrong
#
# The baseline's misclassified test images, ranked by the probability it gave its wrong answer.
# The cases are picked from that ranking automatically, not by hand: greedily the most confident
# failure whose true class is not yet among the picked ones (`evaluate.pick_diverse`), so they
# cover different confusions. All case figures and tables use the first seed's models.

# %%
fail = ev.failures(p0["baseline"], data.classes)
cases = ev.pick_diverse(fail, k=n_cases)
case_idx, case_pred = np.array(cases["index"], dtype=np.int64), np.array(cases["pred"], dtype=np.int64)
if len(cases):
    figs.show(plots.failure_grid(data.test_images, cases, n=len(cases), cols=len(cases)), "baseline_cases",
              f"The baseline's studied failures, seed {S.seeds[0]}: test index, true class, prediction, confidence.")

# %% [markdown]
# Report 001 gave each of its five failures a hypothesis in words ("the gravel path takes up two
# thirds of the image"). Here every column is measured instead. *Neighbours* are the training
# images closest to the failure in the baseline's own feature space (the input of its last layer):
# if most of them carry the predicted class, the model's features put the image among that class's
# training images. The last column counts the baseline's test failures with the same confusion: a
# confusion made many times is systematic (look-alike classes), a rare one more likely comes from
# that image. On the synthetic data, the share of the Grad-CAM map (next section) on the object
# says whether the wrong answer came from the object or the background.

# %%
nets = {name: variant_runs[0] for name, variant_runs in runs.items()}
images, masks = data.test_images[case_idx], None if data.test_masks is None else data.test_masks[case_idx]
cams_before = cam.compute_cams(nets["baseline"], images, targets=case_pred)
train_feats = ev.embed(nets["baseline"], data.train_images)
near = ev.nearest_train_classes(ev.embed(nets["baseline"], images), train_feats, data.train_labels, k=neighbours)
case_rows = ev.case_table(cases, near, data.classes, None if masks is None else cam.energy_in_mask(cams_before, masks))
pairs = fail.groupby(["true", "pred"]).size()
case_rows["failures with this confusion"] = [int(pairs[(t, p)]) for t, p in zip(cases["true"], case_pred)]

# %%
short = {f"neighbours of predicted class (of {neighbours})": "near: pred.", "most common neighbour": "near: most",
         f"neighbours of true class (of {neighbours})": "near: true", "Grad-CAM share on object": "CAM on object"}
figs.table(case_rows.rename(columns=short), "cases", f"The studied failures, measured, seed {S.seeds[0]}. near: how "
           f"many of the {neighbours} nearest training images carry the predicted or the true class, and their most "
           "common class; CAM on object: the map's share on the object (synthetic data only).",
           formats={"confidence": "{:.1%}", "CAM on object": "{:.0%}"})

# %% [markdown]
# ## 8. What the baseline looked at, and whether the map can be trusted
#
# Grad-CAM of the wrong predicted class on the last residual stage (`layer4`, as in the report):
# bright regions are where the evidence *for the wrong answer* sits. Read blobs, not pixels: the
# last stage works on a coarse grid that is upsampled to the image. A heatmap is only worth reading
# if it reflects what the model uses, so each map is scored (table below, and the ROAD score under
# each map). **ROAD** removes the pixels the map ranks highest or lowest and compares how much the
# wrong answer's probability falls: clearly above 0 means removing the highlighted pixels hurts
# more. **Keep** multiplies the image by the map: near 0 or above means the highlighted region alone
# supports the answer. Each score is set beside the same score for a random map with the same values
# in random places; a map that does not beat its random twin says little about the model.

# %%
faith = cam.faithfulness(nets["baseline"], images, cams_before, case_pred, masks=masks)
notes = [f"pred {data.classes[p]}\nROAD {r:+.2f} (random {q:+.2f})"
         for p, r, q in zip(case_pred, faith["road"], faith["road_random"])]
if len(case_idx):
    titles = [f"#{i}\ntrue {data.classes[data.test_labels[i]]}" for i in case_idx]
    figs.show(plots.cam_rows(images, {"baseline": cams_before}, {"baseline": cam.overlay(images, cams_before)},
                             titles, {"baseline": notes}),
              "gradcam_baseline_failures", f"Grad-CAM of the baseline's wrong answer on each studied failure, seed "
              f"{S.seeds[0]}; under each map its ROAD score and that of a random map.")
figs.table(faith.drop(columns="target").rename(columns=cam.FAITHFULNESS_NAMES).set_axis(case_idx).rename_axis(
    "test index"), "faithfulness", f"Faithfulness of each studied map, and of a random map with the same values, "
    f"seed {S.seeds[0]}.", digits=2)

# %% [markdown]
# ## 9. The studied cases after CutMix
#
# For each studied failure: the baseline's answer, the CutMix model's answer (first seed each), and
# what changed: *rescued* (now right), *still wrong* with more or less confidence in the same wrong
# class, or wrong with *another class*. Report 001 saw two of its five corrected and two more with
# much less confidence.

# %%
cmp = ev.compare_cases(case_idx, p0["baseline"], p0["cutmix"], data.classes)
figs.table(pd.DataFrame({
    "true": cmp["true_name"].to_numpy(),
    "baseline": [f"{n} ({c:.0%})" for n, c in zip(cmp["pred_a_name"], cmp["conf_a"])],
    "CutMix": [f"{n} ({c:.0%})" for n, c in zip(cmp["pred_b_name"], cmp["conf_b"])],
    "change": cmp["change"].to_numpy()}, index=cmp["index"].rename("test index")),
    "cases_after", f"The studied failures: each model's answer and its confidence, seed {S.seeds[0]}.")

# %% [markdown]
# Grad-CAM before (left triplet) and after (right triplet) for the cases the CutMix model still
# gets wrong, each map explaining that model's own wrong answer, with its ROAD score. If the CutMix
# model corrects every studied case, there is no figure here.

# %%
still = np.array(cmp.loc[cmp["change"].str.startswith("still wrong"), "index"], dtype=np.int64)
if len(still):
    imgs = data.test_images[still]
    pair = {n: cam.compute_cams(net, imgs, targets=p0[n].pred[still]) for n, net in nets.items()}
    road = {n: cam.faithfulness(nets[n], imgs, c, p0[n].pred[still])["road"] for n, c in pair.items()}
    notes = {n: [f"pred {data.classes[p0[n].pred[i]]} {p0[n].conf[i]:.0%}\nROAD {r:+.2f}"
                 for i, r in zip(still, road[n])] for n in pair}
    figs.show(plots.cam_rows(imgs, pair, {n: cam.overlay(imgs, c) for n, c in pair.items()},
                             [f"#{i}\ntrue {data.classes[data.test_labels[i]]}" for i in still], notes),
              "gradcam_before_after", f"Grad-CAM of each model's own wrong answer, baseline (left) and CutMix "
              f"(right), seed {S.seeds[0]}; under each map the model's answer, its confidence and the map's ROAD.")

# %% [markdown]
# Report 001 read its after-maps as *more spread out*: less tunnel vision on one region. A handful
# of cases cannot show that, so it is measured on up to 200 test images that both models get
# wrong: the entropy of each model's map for its own wrong answer (1 = the same value everywhere,
# lower = more concentrated), paired image by image. A positive difference means the CutMix maps
# are more spread out.

# %%
both = np.flatnonzero(~p0["baseline"].correct & ~p0["cutmix"].correct)[:200]
entropy = {n: cam.spread(cam.compute_cams(net, data.test_images[both], targets=p0[n].pred[both]))["entropy"]
           .to_numpy() for n, net in nets.items()}
spread = evidence.paired_values(entropy["baseline"], entropy["cutmix"])
figs.table({"Grad-CAM entropy": {"images": spread.n, "baseline": spread.mean_a, "CutMix": spread.mean_b,
                                 "difference": spread.diff, "p": evidence.format_p(spread.p_value),
                                 "95% interval": f"[{spread.ci[0]:+.3f}, {spread.ci[1]:+.3f}]"}},
           "cam_spread", f"Entropy of the Grad-CAM maps on test images both models get wrong, seed {S.seeds[0]}.")

# %% [markdown]
# ## 10. From validation to test
#
# The validation images are held out of the training images; the test images are a separate
# split. How much each model loses from one to the other, and whether CutMix loses more than the
# baseline (last row), on the first seed's models. The box says what separates the two splits on
# this run's data, and so what the drop can be read as.

# %%
val = {name: plist[0] for name, plist in study.predict(runs, data, S, split="val").items()}
display(page.banner(cutmix_study.split_shift(data)))
drops, drop_stats = cutmix_study.val_test_table(val, p0)
figs.table(drops, "val_test", f"Validation and test accuracy and the drop between them, seed {S.seeds[0]}.",
           digits=2)

# %% [markdown]
# Where CutMix loses test accuracy against the baseline (the verdict in section 3 says whether it
# does in this run), this study does **not test why**. One candidate on the synthetic data is the
# label: CutMix weights each image by the *area* it keeps, while a synthetic object covers a small
# part of the image, so a pasted box carries mostly background. Testing that would take a CutMix
# run whose labels are weighted by the object mask's share instead of the area; this study does
# not run it, so the candidate stays a candidate.
#
# ## 11. Who gained: classes and images
#
# Per-class test accuracy change (CutMix minus baseline, first seed), sorted; green bars gained, red
# lost. These are single counts per class without intervals: read them as where to look, not as
# differences established.

# %%
per_class = {name: ev.per_class_accuracy(p.pred, data.test_labels, data.num_classes) for name, p in p0.items()}
figs.show(plots.per_class_change(per_class["cutmix"] - per_class["baseline"], data.classes,
                                 "Per-class test accuracy change, CutMix - baseline"), "per_class_change",
          f"Per-class test accuracy change in points, seed {S.seeds[0]}; no intervals.")

# %% [markdown]
# Test images CutMix rescued (now right), images it broke, and the images both models get wrong.
# The rescued and broken counts are the two numbers McNemar's test in section 3 is built on. Of the
# images wrong in both, report 001 found 57.5% answered with less confidence by CutMix; the table
# gives this run's share with its exact interval and a test against one half (as often less as more
# confident).

# %%
moved = ev.migration(p0["baseline"], p0["cutmix"])
figs.show(plots.migration_bars({"rescued": moved["rescued"], "broken": moved["broken"],
                                "wrong in both": moved["still_wrong"],
                                "... CutMix less confident": moved["still_wrong_less_confident"]}),
          "sample_migration", f"Where the test images moved from the baseline to CutMix, seed {S.seeds[0]}.")
less = confidence.less_confident(p0["baseline"], p0["cutmix"])
figs.table({"wrong in both": {"images": less["both wrong"], "CutMix less confident": less["B less confident"],
                              "share (%)": 100 * less["share"],
                              "95% interval (%)": f"[{100 * less['ci'][0]:.1f}, {100 * less['ci'][1]:.1f}]",
                              "p (share = 1/2)": evidence.format_p(less["p_value"])}},
           "less_confident", f"Images both models get wrong, seed {S.seeds[0]}; report 001: "
           f"{S.study.reported['less_confident'][0]:.1%} of {S.study.reported['less_confident'][1]:,}.", digits=1)

# %% [markdown]
# ## 12. Any test image, through both models
#
# The studied failures are a handful of images. The explorer below opens any other: pick a test image
# by its index, by its true class, or from the lists computed here (the studied failures, each
# model's failures with the most confident first, the images CutMix rescued and those it broke). It
# sets both models' top five classes beside each model's Grad-CAM for its own answer and for the true
# class, each map with its ROAD score beside a random map's. Worth comparing: how sure each model is
# on the same failure, and whether the CutMix model's map for its answer sits on the object where
# the baseline's sat on the background. The report, which cannot run the explorer, shows its view of
# a few of the images instead.

# %%
explorer.compare(S, runs, preds, data, figs, lists={"studied failures (section 7)": case_idx})

# %% [markdown]
# ## Conclusion
#
# The summary at the top sets each model's test accuracy beside report 001's and gives the verdict
# on the difference; read it with the scale of this run (profile, data, epochs, seeds), which the
# verdict states when the result is not a clear agreement. The report's claims are measured one by
# one, each with its own interval: the accuracy gain (section 3), the confident errors (section 4,
# the count at each threshold), calibration (section 5, ECE), the usefulness of a threshold
# (section 6), the studied failures with measured cues and faithfulness-scored maps (sections 7-9),
# and the spread of attention (section 9). Each of them can hold without the others: a model can
# gain accuracy and stay overconfident, or lose accuracy and become better calibrated.
#
# Three things this study does not establish. It does not separate CutMix from label smoothing: the
# second run changes both, and smoothing alone lowers every confidence. It does not test why CutMix
# helps or hurts on a given dataset (section 10). And the report's reading of its heatmaps ("the
# model fixates on the dominant texture") holds for a map only where that map beats its random twin
# in section 8; a map that does not is no evidence either way. Some errors no training trick
# removes: at 32x32 pixels some classes are hard to separate (the report's lobster and crab).

# %% tags=["remove-cell"]
metrics = study.finish(head, S, preds, result, runs)
page.write_metrics(output_dir, {
    **metrics, "summary": {n: confidence.confidence_summary(p) for n, p in p0.items()},
    "confident_errors": error_stats, "ece": ece.to_dict(), "migration": moved, "less_confident": less,
    "case_indices": [int(i) for i in cmp["index"]], "case_changes": list(cmp["change"]),
    "cam_faithfulness": faith.to_dict(orient="list"), "cam_spread": spread.to_dict(), "val_test": drop_stats}, figs)
