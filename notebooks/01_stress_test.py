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
# # 01 · Stress-testing a CNN: confident failures, Grad-CAM and one residual change
#
# Run it top to bottom (or headless: `make reports`); the report hides this notebook's code.

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from helpers import cam, explorer, page, plots, study
from helpers import evaluate as ev
from helpers.protocol import protocol_card
from helpers.studies import stress_test as stress

# %% tags=["parameters"]
profile = "quick"       # smoke | quick | full
dataset = None          # None: the profile's (quick, full: CIFAR-10 if in data/ or downloadable, else synthetic)
seeds = 1               # training seeds per model: k (the report's seed, then the next k-1) or "1,2,3"
seed = None             # None: the report's seed (2026), the first of the seeds
device = "auto"         # auto | cpu | cuda | mps
precision = None        # None: fp32, as the report; "bf16" on a CUDA GPU is faster but not the report's
output_dir = "../reports/interactive/01_stress_test"  # figures/ and metrics.json go here
epochs = None           # None: the profile's number of epochs
n_train = None          # None: the profile's training images (quick: a subset; full: all)
n_test = None           # None: the profile's test images
cam_images = 400        # test images whose plain and residual Grad-CAMs are compared image by image
faithful_images = 32    # of those, images whose maps are scored for faithfulness (about 0.25 s each on a CPU)

# %%
S, data, head, figs = study.begin("stress_test", output_dir, profile=profile, dataset=dataset, seeds=seeds,
                                  seed=seed, device=device, precision=precision, epochs=epochs, n_train=n_train,
                                  n_test=n_test)
has_masks = data.test_masks is not None  # object masks: the synthetic source only

# %% [markdown]
# A test accuracy says how often a network is right, not how it is wrong. This study trains one
# CNN twice, as a plain stack of convolutions and with residual shortcuts in every block, and
# stress-tests both: the most confident mistakes, three of them studied with Grad-CAM, and what
# the residual change did to each. Where report 000 reads its Grad-CAM maps by eye, each reading
# here is a number with its uncertainty, each studied map carries a score of whether it reflects
# what the model uses, and on the synthetic data, whose object pixels are known, the share of each
# map on the object is measured.
#
# On the synthetic stand-in each class is a shape (some deliberately alike: disc and ring, square
# and diamond, plus and x) on a textured background; in the training split most images of a class
# share one background, in the test split the background is random, so a model that learns the
# background is rewarded in training and punished at test time. On CIFAR-10 natural correlations
# play that role (sky behind airplanes, water under ships). The model, FlexibleCNN, is a 3x3
# convolution stem, three stages of blocks (64, 128 and 256 channels at width 1; the second and
# third stage start with a stride of 2; the report's code has five blocks a stage, the protocol
# card gives this run's count), global average pooling and one linear layer. A plain block is
# conv-BN-ReLU-conv-BN-ReLU; the residual block adds its input back before the last ReLU,
# `ReLU(ConvBN2(x) + shortcut(x))`, with a learned 1x1 projection where the shape changes. As in the
# report's code, both models build those projections and only the residual one uses them, so both
# start from the same random weights and the code's parameter count is the same for both.

# %% [markdown]
# ## The protocol
#
# One row per setting: report 000's text, what its published code did, this run's value, and a
# mark: *same*; *code* (the text says otherwise or gives no value, and this run follows the code,
# which produced the report's numbers); *chosen* (both are silent; *why* gives the reason); *scaled*
# (quick or smoke profile); *changed* (set by hand). The momentum row is where text and code
# disagree: the text states 0.9, while the code's One-Cycle schedule cycles it.

# %%
figs.table(protocol_card(S, data), "protocol", "This run's settings against report 000's.")

# %% [markdown]
# ## 1. Training
#
# Both models train once per seed with the same data, split, augmentation, optimiser and One-Cycle
# schedule (runs are cached under `data/runs/`). Training accuracy (solid, on augmented images) and
# validation accuracy (dotted): a validation curve falling while training climbs would be
# overfitting. As in the report, each model is tested at its best validation epoch (caption). At
# the full profile the authors' logged run is drawn in black beside each model.

# %%
runs = study.train(S, data)
first = {name: variant_runs[0].history for name, variant_runs in runs.items()}
best = {name: int(h["epoch"][h["val_acc"].idxmax()]) for name, h in first.items()}
logs, gaps, gap_line = study.against_logs(S, {name: [r.history for r in rs] for name, rs in runs.items()})
figs.show(plots.training_curves(first, "acc", reference=logs), "accuracy_curves",
          f"Training (solid) and validation (dotted) accuracy per epoch, seed {S.seeds[0]}; best validation "
          f"epoch (the checkpoint tested): " + ", ".join(f"{name} {e}" for name, e in best.items()) + ".")
display(Markdown(gap_line))
if gaps is not None:
    figs.table(gaps, "log_gaps", "This run's curves minus the authors' logged ones (accuracies in points), and "
               "the spread between this run's seeds.", formats={"at epoch": "{:.0f}"})

# %% [markdown]
# ## 2. Test accuracy, against the report
#
# The two checkpoints are compared on the *same* test images: the difference with its 95% interval
# and a test of whether chance could produce it (one seed: paired bootstrap and McNemar's test;
# several: paired t-test over seeds, and a figure of the seeds), then the verdict against the report's.

# %%
preds = study.predict(runs, data, S)
result = study.accuracy_verdict(S, preds, data, figs)

# %% [markdown]
# ## 3. Later epochs: ahead, and steadier?
#
# Report 000 finds the residual model slightly ahead in later epochs and slightly more stable there
# (the accuracy figure's right panel shows both curves). Both are measured over the second half of
# training: validation accuracy epoch by epoch, and the mean change from one epoch to the next
# (smaller is steadier). Few epochs give few pairs, and the intervals say so.

# %%
late = S.config.epochs // 2 + 1  # the second half of training
later = {name: 100 * h.loc[h["epoch"] >= late, "val_acc"].to_numpy() for name, h in first.items()}
ahead = stress.paired_rows({"validation accuracy (%)": (later["plain"], later["residual"])}, ("plain", "residual"))
steady, steady_metrics = study.smoothness(S, runs, "val_acc", from_epoch=late)
steady_row = steady.drop(columns="test").set_axis(["its change per epoch (points)"]).set_axis(ahead.columns[:5], axis=1)
figs.table(pd.concat([ahead, steady_row]), "later_epochs",
           f"Epochs {late}-{S.config.epochs}: validation accuracy paired by epoch (seed {S.seeds[0]}), and its mean "
           f"change from one epoch to the next ({steady['test'].iloc[0]}).", formats={"pairs": "{:.0f}"})

# %% [markdown]
# ## 4. Where the errors are
#
# The confusion matrices (first seed; a row is a true class, in % of its images) show where each
# model's errors go: the diagonal holds each class's accuracy, bright cells off it are systematic
# confusions (on the synthetic data mostly between look-alike shapes).

# %%
p0 = {name: plist[0] for name, plist in preds.items()}
cms = {name: ev.confusion(p.pred, data.test_labels, data.num_classes) for name, p in p0.items()}
figs.show(plots.confusion_matrices(cms, data.classes), "confusion_matrices",
          f"Confusion matrices in % of each true class, seed {S.seeds[0]}.")

# %% [markdown]
# ## 5. High-confidence failures
#
# Each model's most confident mistakes (as many per model as the report's code listed): a model that
# is unsure when it is wrong can be caught by a threshold, one that is 99% sure cannot. The first
# table counts them on the same test images
# (under *wrong*, "only plain" are the images the residual model rescued, "only residual" those it
# broke); the second says what the residual model makes of each plain failure.

# %%
fail = {name: ev.failures(p, data.classes) for name, p in p0.items()}
top = S.extra["failures"]
figs.show(plots.failure_grid(data.test_images, pd.concat([f.head(top) for f in fail.values()]), n=2 * top,
                             cols=top // 2), "failures", f"The {top} most confident failures of the plain model "
          f"(first two rows) and of the residual model (last two rows), seed {S.seeds[0]}.")
errors = stress.error_counts(p0["plain"], p0["residual"], ("plain", "residual"))
figs.table(errors, "errors",
           f"Wrong test images and confidently wrong ones, residual minus plain (exact McNemar), seed {S.seeds[0]}.")
all_changes = ev.compare_cases(fail["plain"]["index"], p0["plain"], p0["residual"], data.classes)["change"]
figs.table(stress.change_counts(all_changes), "changes",
           f"What became of the plain model's failures under the residual model, seed {S.seeds[0]}.", digits=1)

# %% [markdown]
# ## 6. Three canonical failures
#
# Three plain-model failures are picked to cover different error types (greedily, the most
# confident one whose true class is new). On torchvision's CIFAR-10 test set the report's own three
# (its code names them by index) are studied beside them. In place of the report's per-case notes,
# measured cues: among the five training images nearest in the plain model's feature space, how
# many carry the predicted and the true class; the share of its Grad-CAM on the object (synthetic
# data only); and what the residual model makes of the image.

# %%
cases, canonical_note = stress.study_cases(S, data, p0["plain"])
display(Markdown(canonical_note))
case_idx = cases["index"].to_numpy().copy()  # writable: torch indexes with it
case_images, case_masks = data.test_images[case_idx], data.test_masks[case_idx] if has_masks else None
nets = {name: variant_runs[0] for name, variant_runs in runs.items()}  # best checkpoints (predict loaded them)
scored = {name: stress.score_maps(net, case_images, p0[name].pred[case_idx], masks=case_masks, seed=S.seeds[0])
          for name, net in nets.items()}
train_feats = ev.embed(nets["plain"], data.train_images)
neighbours = ev.nearest_train_classes(ev.embed(nets["plain"], case_images), train_feats, data.train_labels,
                                      k=min(5, len(train_feats)))

# %%
cmp = ev.compare_cases(case_idx, p0["plain"], p0["residual"], data.classes)
case_tab = ev.case_table(cases, neighbours, data.classes, scored["plain"][1]["in_mask"] if has_masks else None)
figs.table(stress.case_columns(case_tab, cmp, "residual", cases["picked"]), "cases",
           f"The canonical failures of the plain model (one column per test image), seed {S.seeds[0]}.")

# %% [markdown]
# ## 7. Grad-CAM on the canonical failures
#
# Grad-CAM weights the feature maps of the last block's second convolution (before its BatchNorm,
# the layer the report's code used) by the gradient of each model's *own* predicted class: on a
# failure, what convinced the model of the wrong answer. Under each heatmap: the map's
# **ROAD** score beside a random map's with the same values in random places (the drop in
# probability, in points, when the pixels the map ranks highest rather than lowest are removed):
# a map that shows what the model uses scores clearly above the random one.

# %%
if len(case_idx):
    case_cams = {name: c for name, (c, _) in scored.items()}
    figs.show(plots.cam_rows(case_images, case_cams, {n: cam.overlay(case_images, c) for n, c in case_cams.items()},
                             [f"#{i}\ntrue {data.classes[data.test_labels[i]]}" for i in case_idx],
                             {name: stress.cam_notes(t, data.classes) for name, (_, t) in scored.items()}),
              "gradcam_canonical_failures", f"Grad-CAM of each model's own prediction on the canonical failures, "
              f"with the ROAD score of each map and of a random map, seed {S.seeds[0]}.", key=True)

# %% [markdown]
# ## 8. Do the maps hold beyond three cases?
#
# Three cases make a story, not a measurement: the claims are checked on a seeded sample of test
# images, half the plain model's failures and half its right answers. First, faithfulness: each
# model's maps against random maps of the same values, image by image (*keep*: the change in
# probability when only the highlighted region is kept). A positive difference means the maps
# point at what the model uses more than chance placement does.

# %%
groups = stress.sample_groups(p0["plain"].correct, cam_images // 2, seed=S.seeds[0])
part = np.sort(np.concatenate([groups[g][: faithful_images // 2] for g in stress.GROUPS]))
faith = {name: stress.score_maps(net, data.test_images[part], p0[name].pred[part], seed=S.seeds[0])[1]
         for name, net in nets.items()}
figs.table(stress.paired_rows({(name, label): (t[f"{col}_random"], t[col]) for name, t in faith.items()
                               for col, label in (("road", "ROAD"), ("keep", "keep"))},
                              ("random map", "Grad-CAM"), scale=100, seed=S.seeds[0]), "faithfulness",
           f"Faithfulness of each model's Grad-CAM against random maps of the same values, seed {S.seeds[0]}.")

# %% [markdown]
# Then report 000's "less diffuse": both models' maps of the *same* images, in %. *Entropy* is 100
# for an even map, 0 for one lit pixel; *above half peak* is the share of pixels at least half as
# bright as the brightest; *on the object*, the share inside the object mask.

# %%
sample = np.concatenate([groups[g] for g in stress.GROUPS])  # the plain model's failures, then its right answers
which = np.repeat(stress.GROUPS, [len(groups[g]) for g in stress.GROUPS])
masks = data.test_masks[sample] if has_masks else None
maps = {name: stress.score_maps(net, data.test_images[sample], p0[name].pred[sample], masks=masks,
                                faithful=False)[1] for name, net in nets.items()}
labels = {"entropy": "entropy", "above_half": "above half peak", "in_mask": "on the object"}
plain_was = {"failure": "plain wrong", "correct": "plain right"}
spread_table = stress.paired_rows({(labels[c], plain_was[g]): (maps["plain"][c][which == g],
                                                               maps["residual"][c][which == g])
                                   for c in labels if c in maps["plain"] for g in stress.GROUPS},
                                  ("plain", "residual"), scale=100, seed=S.seeds[0])
figs.table(spread_table, "map_spread", f"Plain and residual Grad-CAM maps of the same test images, paired, "
           f"seed {S.seeds[0]}.")

# %% [markdown]
# ## 9. How much of the heatmap lies on the object
#
# On the synthetic data each model is also compared with itself, wrong against right (up to 500
# images each). A map that ignores the object scores the object's area (dashed line); `vs_area`,
# the share over the area, is the fairer comparison when failures have smaller objects.

# %%
if has_masks:
    attention = pd.concat(
        {name: stress.attention_on_object(net, data.test_images, data.test_masks, p0[name], max_per_group=500,
                                          seed=S.seeds[0])
         for name, net in nets.items()}, names=["model", None]).reset_index(level="model")
    attention_table = stress.summarize_attention(attention, by=("model", "group"))
    figs.show(stress.attention_figure(attention), "attention_on_object",
              f"Share of Grad-CAM on the object: mean with 95% interval (left) and distribution, seed {S.seeds[0]}.")
    figs.table(attention_table, "attention", "Share of Grad-CAM on the object per model and group.")
else:
    attention_table = None
    display(Markdown("This dataset has no object masks (only the synthetic stand-in has), so this section is "
                     "skipped."))

# %% [markdown]
# ## 10. Any test image, through both models
#
# The sections above study images this notebook chose. Below you choose: any test image by its index,
# by its true class, or from the lists computed here (the canonical failures, each model's failures
# with the most confident first, the images the residual change rescued and those it broke). Both
# models' top five classes sit beside each model's Grad-CAM for its own answer and for the true
# class, and every map carries its ROAD score beside a random map's. Look for the failures where the
# map for the true class does cover the object: the model found it and still preferred another class.
# The report, which cannot run the explorer, shows its view of a few of the images instead.

# %%
explorer.compare(S, runs, preds, data, figs, lists={"studied failures (section 6)": case_idx})

# %% [markdown]
# ## Conclusion
#
# The summary at the top gives the verdict against report 000, with this run's scale when it is
# no significant confirmation. The report's other claims are measurements with intervals: later
# epochs (section 3), confident mistakes (5), compact heatmaps (8) and attention on the object (8,
# 9). Each can hold without the others; an interval that includes zero confirms nothing; a Grad-CAM
# map is evidence about the model only as far as it beats a random map.

# %% tags=["remove-cell"]
metrics = study.finish(head, S, preds, result, runs)
energy = None if attention_table is None else {f"{m}_{g}": v for (m, g), v in attention_table["mean"].items()}
page.write_metrics(output_dir, {**metrics, "smoothness": steady_metrics, "errors": errors.to_dict(orient="index"),
                                "case_indices": case_idx.tolist(), "case_changes": cmp["change"].tolist(),
                                "map_spread": spread_table.set_axis(spread_table.index.map(", ".join))
                                .to_dict(orient="index"), "energy_in_mask": energy}, figs)
