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
# # 04 · Inside a ResNet-18 run: compute, gradient flow, weight updates and the batch size
#
# Run it top to bottom (or headless: `make reports`); the report hides this notebook's code.

# %%
import pandas as pd

from helpers import explorer, page, plots, study
from helpers.models import build_model, count_parameters, flops, summary
from helpers.profiles import settings
from helpers.protocol import protocol_card
from helpers.records import layers
from helpers.studies import worksheet_analysis as W

# %% tags=["parameters"]
profile = "quick"       # smoke | quick | full
dataset = None          # None: the profile's (quick, full: CIFAR-10 if in data/ or downloadable, else synthetic)
seeds = 1               # training seeds per experiment: k (the report's seed, then the next k-1) or "1,2,3"
seed = None             # None: 42 (the report gives no seed), the first of the seeds
device = "auto"         # auto | cpu | cuda | mps
precision = None        # None: fp32, as the report; "bf16" on a CUDA GPU is faster but not the report's
output_dir = "../reports/interactive/04_worksheet_analysis"  # figures/ and metrics.json go here
epochs = None           # None: the profile's number of epochs
n_train = None          # None: the profile's training images (quick: a subset; full: all)
n_test = None           # None: the profile's test images
lr = None               # None: experiment 1's peak learning rate in the profile (the report: 0.15)
lr_2 = None             # None: experiment 2's (the report: 0.20)
batch_size_2 = None     # None: experiment 2's batch size (the report: 128)
record_every = None     # None: the profile's interval in optimiser steps (full: 100, as in the report)
log_to = "none"         # none | tensorboard | wandb: also copy the runs' logs there (if installed)

# %%
if log_to not in W.LOGGERS:
    raise ValueError(f"log_to must be one of {', '.join(W.LOGGERS)}, not {log_to!r}")
S, data, head, figs = study.begin("worksheet_analysis", output_dir, profile=profile, dataset=dataset, seeds=seeds,
                                  seed=seed, device=device, precision=precision, epochs=epochs, n_train=n_train,
                                  n_test=n_test, lr=lr, lr_2=lr_2,
                                  batch_size_2=batch_size_2, record_every=record_every)

# %% [markdown]
# Accuracy curves show *that* a network learns; this study looks at *how*. It counts what one
# forward pass of a ResNet-18 costs, layer by layer; it records, at a fixed interval of optimiser
# steps, how large each layer's gradient is and how far each layer's weights move; and it trains
# the same network twice, once with small batches at a lower learning rate (experiment 1) and once
# with batches twice as large at a higher one (experiment 2), to see what that choice changes. The
# study follows reference report 003: ResNet-18 on CIFAR-10 for 25 epochs with SGD and a cosine
# schedule, batch 64 at 0.15 against batch 128 at 0.20. The protocol card lists every setting of
# this run against the report's.

# %% [markdown]
# ## The protocol
#
# Each row is one setting: what report 003 says, what this run uses, and a mark. *same* is the
# report's value; *chosen* fills a gap the report leaves (the reason is given); *scaled* is a
# smaller value of the quick or smoke profile; *changed* is a value set by hand for this run.
# Report 003 counts 781 and 390 batches per epoch for its two experiments: the last, partial batch
# of each epoch is dropped, and this run does the same.

# %%
figs.table(protocol_card(S, data), "protocol", "This run's settings against report 003's.")

# %% [markdown]
# ## 1. The data
#
# One training image per class. The images are normalised with the CIFAR-10 channel statistics the
# report gives, whatever the dataset, so that the protocol stays the report's.

# %%
figs.show(plots.one_per_class(data.train_images, data.train_labels, data.classes), "samples_per_class",
          "One training image per class.")

# %% [markdown]
# ## 2. The model
#
# ResNet-18 for 32x32 images: a 3x3 stride-1 stem instead of ImageNet's 7x7 stride-2 one and no
# max-pool, then four stages of two BasicBlocks each (two 3x3 convolutions with BatchNorm, added to
# the block's input) with 64, 128, 256 and 512 channels; the first block of stages 2-4 halves the
# resolution and carries a 1x1 convolution on its shortcut. Depth counts the layers with weights on
# the main path (17 convolutions and the classifier); the memory is that of the fp32 weights alone.
# The first table is the report's model summary, at the report's width and at this run's.

# %%
model = build_model("resnet18_cifar", data.num_classes)
arch = W.architecture(model)
weights = [name for name, _ in layers(model)]
run_model = build_model("resnet18_cifar", data.num_classes, width=S.config.width)
facts = {"total parameters": count_parameters(model), "trainable parameters": count_parameters(model, True),
         "depth (weight layers on the main path)": sum("downsample" not in n for n in weights),
         "residual blocks": int((arch["type"] == "BasicBlock").sum()),
         "memory of the weights (MB, fp32)": summary(model)[1]["params"],
         f"parameters at this run's width ({S.config.width:g})": count_parameters(run_model)}
figs.table(pd.Series(facts, name="ResNet-18", dtype=object), "model", "The model at the report's width (report 003: "
           "11,173,962 parameters, 18 layers, 8 residual blocks, about 42.6 MB).", digits=1)

# %% [markdown]
# The architecture block by block, in the order an image passes through it: each part's output for
# one image (channels x height x width), its parameters, and its multiply-adds (counted as in the
# next section). Each stage halves the resolution and doubles the channels, so the second block of
# every stage costs the same while its parameters grow fourfold from one stage to the next; the first
# block of stages 2-4 costs less, as its first convolution works at stride 2.

# %%
figs.table(arch, "architecture", "ResNet-18 for 32x32 images, part by part, at the report's width.",
           formats={"share (%)": "{:.2f}"})

# %% [markdown]
# ## 3. What a forward pass costs
#
# FLOPs are counted by `torch.utils.flop_counter` on one image. The counter counts a multiply-add as
# two operations; report 003's "0.5567 GFLOPs" is the number of multiply-adds (MACs), and its
# FLOPs-per-parameter ratio of about 50 divides multiply-adds by parameters, so both conventions are
# shown. Only convolutions and the linear layer are counted: normalisation, activations and additions
# are a rounding error beside them. The figure gives each layer's share of the total.

# %%
flop_table, flop_totals = flops(model)
figs.show(W.flops_per_layer(flop_table), "flops_per_layer",
          "Each layer's share of one image's forward pass, stem at the top. Notice how many layers tie.")
top = flop_table["share"].max()
totals = {"multiply-adds per image (G)": flop_totals["macs"] / 1e9, "FLOPs per image (G, 2 per MAC)":
          flop_totals["flops"] / 1e9, "multiply-adds per parameter": flop_totals["macs"] / flop_totals["params"],
          "FLOPs per parameter": flop_totals["flops_per_param"], "largest share of one layer (%)": 100 * top,
          "layers with that share": int((flop_table["share"] == top).sum())}
figs.table(pd.Series(totals, name="ResNet-18", dtype=object), "flop_totals",
           "Compute of one 32x32 image (report 003: 0.5567 G multiply-adds, 6.78% per layer).", digits=4)

# %% [markdown]
# The ten layers that cost most, as the report lists them. A 3x3 convolution costs the same at every
# stage because halving the resolution quarters the positions while doubling the channels
# quadruples the work per position; the stride-2 convolutions and the 1x1 shortcuts cost less.

# %%
ten = flop_table.nlargest(10, "share").set_index("layer")
figs.table(ten.assign(**{"share (%)": 100 * ten["share"]})[["type", "macs", "share (%)", "params"]]
           .rename(columns={"macs": "MACs", "params": "parameters"}),
           "flops_top", "The ten most expensive layers (report 003 lists ten at 37,748,736 each).",
           formats={"share (%)": "{:.2f}"})

# %% [markdown]
# ## 4. Two experiments: batch size and learning rate
#
# Experiment 1 uses batches of 64 at a peak learning rate of 0.15, experiment 2 batches of 128 at
# 0.20 (at the report's scale; the protocol card gives this run's values); everything else is shared,
# including the cosine schedule over all epochs. During training, at a fixed interval of optimiser
# steps, the engine records each layer's gradient (after the backward pass) and the change of its
# weights (after the step). Runs are cached with their records, so a re-run draws every figure below
# without training. Like the report, there is no validation split: the test split is evaluated after
# every epoch.

# %%
runs = study.train(S, data)
first = {variant: variant_runs[0] for variant, variant_runs in runs.items()}
names = {v: f"exp {v[-1]} (batch {r.config.batch_size}, lr {r.config.lr:g})" for v, r in first.items()}
histories = {names[v]: r.history for v, r in first.items()}
logs = {names[v]: W.log_run(r, to=log_to) for v, r in first.items()}

# %% [markdown]
# The report's comparison table, this run's numbers (first seed) beside the report's. The gap is
# training minus test accuracy at the last epoch; the convergence epoch is the first whose test
# accuracy reaches 95% of the final one; the time is this machine's, not the report's GPU.

# %%
results = W.experiment_summary(first, data)
figs.table(results.T, "experiments", f"Both experiments at the last epoch, seed {S.seeds[0]}, against report 003.",
           formats="{:,.4g}")

# %% [markdown]
# Progress at selected epochs: the report prints epochs 1, 5, 10, 15, 20 and 25 of 25; here the same
# fractions of this run's epochs.

# %%
n_epochs = S.config.epochs
picked = sorted({1, *(int(round(f * n_epochs)) for f in (0.2, 0.4, 0.6, 0.8, 1.0))} - {0})
columns = ("train_loss", "train_acc", "test_loss", "test_acc")
progress = pd.DataFrame({f"exp {v[-1]}: {c.replace('_', ' ')}": r.history.set_index("epoch").loc[picked, c]
                         for v, r in first.items() for c in columns}).T.rename(columns="epoch {}".format)
figs.table(progress, "progress", f"Loss and accuracy (fractions) at selected epochs, seed {S.seeds[0]}.")

# %% [markdown]
# Loss and accuracy curves of both experiments: training solid, test dotted. The report sees
# experiment 2 ahead after the first epoch and experiment 1 ahead at the end; look for where the
# two test curves cross, if they do.

# %%
figs.show(plots.training_curves(histories, "loss"), "loss_curves",
          f"Training (solid) and test (dotted) loss per epoch, seed {S.seeds[0]}.")
figs.show(plots.training_curves(histories, "acc"), "accuracy_curves",
          f"Training (solid) and test (dotted) accuracy per epoch, seed {S.seeds[0]}.")

# %% [markdown]
# ## 5. Test accuracy, against the report
#
# Both experiments are tested with their last epoch's weights on the same test images. The
# difference comes with a 95% interval and a test of whether it could be chance (with one seed: a
# paired bootstrap over test images and McNemar's test on the images only one experiment gets right;
# with several seeds: a paired t-test over seeds, and a figure of each seed's accuracy). The verdict
# sets the result against the report's 0.71 points in favour of experiment 1.

# %%
preds = study.predict(runs, data, S)
result = study.accuracy_verdict(S, preds, data, figs, caption="Test accuracy (%) of each experiment and seed.")

# %% [markdown]
# ## 6. Gradient flow
#
# Mean absolute gradient of every layer, from the stem (left) to the classifier (right), at the
# first, a middle and the last record. In a healthy network the curve has no cliff: early layers may
# get smaller gradients than late ones, but not by many orders of magnitude. Residual shortcuts are
# what keeps the early layers reachable.

# %%
gradients = {names[v]: r.gradients for v, r in first.items()}
figs.show(W.gradient_flow(gradients, "mean_abs"), "gradient_flow",
          f"Mean |gradient| per layer early, midway and late in training, seed {S.seeds[0]}.", key=True)

# %% [markdown]
# The same records over the whole run: one row per layer, one column per record, colour = log10 of
# the layer's gradient norm. Read it left to right for how gradients shrink as the learning rate
# anneals and the loss falls, top to bottom for how they differ across depth.

# %%
figs.show(W.layer_heatmaps(gradients, "norm", "gradient norm", "Gradient norm by layer over training"),
          "gradient_norm_heatmap", f"log10 gradient norm per layer (rows) and record (columns), seed {S.seeds[0]}.")

# %% [markdown]
# Report 003's health check counts a layer's gradient as *vanishing* when its mean |gradient| falls
# below 1e-6 and as *exploding* when its norm exceeds 10 (its thresholds), over every layer and
# record. The last row is the mean gradient norm over the layers at the last record, which the
# report gives as 0.00342 at convergence.

# %%
health = W.gradient_health(gradients)
figs.table(health, "gradient_health", f"Gradient health over all records, seed {S.seeds[0]}.",
           formats=page.number)

# %% [markdown]
# The report gives a gradient range per stage, one decade each, from 1e-5 in the first stage to 1 at
# the classifier; it does not say which statistic. The table gives this run's mean |gradient| per
# stage (over all records and layers of the stage) and the median gradient norm, for experiment 1.

# %%
stages = W.stage_gradients(first["exp1"].gradients)
figs.table(stages, "gradient_stages", f"Gradients per stage of experiment 1, seed {S.seeds[0]}, against report 003.",
           formats={c: "{:.1e}" for c in stages.columns[:-1]})

# %% [markdown]
# ## 7. Weight updates
#
# The relative update of a layer is how far its weights moved since the previous record, divided by
# their size: large early on, when the network leaves its random initialisation, and shrinking as
# the cosine schedule takes the learning rate to zero. The lines show the stem, the last convolution
# of each stage and the classifier; the heatmap shows every layer.

# %%
updates = {names[v]: r.updates for v, r in first.items()}
stage_last = [[n for n in weights if n.startswith(f"layer{i}.") and "downsample" not in n][-1] for i in range(1, 5)]
shown = [weights[0], *stage_last, weights[-1]]
figs.show(W.update_lines(updates, shown), "weight_updates",
          f"Relative weight update per interval of a few layers, seed {S.seeds[0]}.")
figs.show(W.layer_heatmaps(updates, "relative_update", "relative update", "Relative weight update by layer"),
          "weight_update_heatmap", f"log10 relative update per layer (rows) and record (columns), seed {S.seeds[0]}.")

# %% [markdown]
# The report ranks its layers by their total change: the classifier first, then stage 4 down to
# stage 1. The table ranks the stages of experiment 1 by the total distance their weights travelled
# (the sum of the per-record update norms, averaged over the stage's layers), with the mean relative
# update beside it: a large layer can travel far and still change little relative to its size.

# %%
figs.table(W.stage_updates(first["exp1"].updates), "update_stages",
           f"Weight change per stage of experiment 1, seed {S.seeds[0]}, against report 003's ranking.",
           formats={"total change": "{:.3g}", "mean relative update": "{:.2e}", "report 003's rank": "{:.0f}"})

# %% [markdown]
# Report 003 also watches the weights themselves: their magnitudes grow slowly, their spread
# settles, and no weight explodes ("all values < 1.0"). The figure follows each shown layer's
# standard deviation (top) and largest absolute weight (bottom, the report's bound dashed); the
# table checks the bound over every layer and record, and on the final weights.

# %%
figs.show(W.weight_stats(updates, shown, limit=W.WEIGHT_LIMIT), "weight_stats",
          f"Weight standard deviation (top) and largest |weight| (bottom) over training, seed {S.seeds[0]}.")
check = W.weight_check({names[v]: r for v, r in first.items()})
figs.table(check, "weight_check", f"Largest |weight| of any layer over the run, seed {S.seeds[0]}.",
           formats={"largest |weight|": "{:.3f}"})

# %% [markdown]
# ## 8. The learning-rate schedules
#
# Cosine annealing from each experiment's peak to zero over the run. Report 003 logs the learning
# rate after each epoch's scheduler step, so the figure and the first table show that value (the
# learning rate in force at the end of the epoch).

# %%
figs.show(plots.learning_rates(histories, "lr_end"), "learning_rate",
          "Learning rate after each epoch's scheduler step, as report 003 logs it.")
lr_log = pd.DataFrame({names[v]: r.history.set_index("epoch")["lr_end"] for v, r in first.items()}).loc[picked]
figs.table(lr_log, "lr_log", "This run's learning rate after the step, at the selected epochs.", digits=4)

# %% [markdown]
# Does the report log the learning rate before or after the step? The table computes the full
# profile's schedule (the report's 25 epochs and peaks) without training, and sets both readings
# beside the report's log: the values after the step match it, while those at the epoch's start are
# the previous epoch's values.

# %%
full_configs = {v: configs[0] for v, configs in settings("worksheet_analysis", "full").runs().items()}
figs.table(W.lr_readings(full_configs), "lr_readings",
           "Report 003's logged LR, and the full profile's schedule after the step and at the start.", digits=4)

# %% [markdown]
# ## 9. Any layer, any epoch
#
# The figures above follow a few layers or squeeze every layer into a heatmap. The explorer below
# takes one layer (the dropdown) and one epoch (the slider) and gives both experiments' records of
# that layer in that epoch, averaged over the epoch's records: mean |gradient| and gradient norm,
# relative update, weight standard deviation and largest |weight|, under the whole run's curves with
# the epoch marked. A layer whose relative update stays high while the others settle is one to
# watch. The report, which cannot run the explorer, shows the first layer at the last epoch.

# %%
explorer.records({names[v]: r for v, r in first.items()}, figs)

# %% [markdown]
# ## Conclusion
#
# The summary at the top sets each experiment's test accuracy beside report 003's and gives the
# verdict on their difference, with its interval and the scale of this run. The report explains
# experiment 1's lead by its smaller batches (more updates per epoch act as regularisation) and its
# moderate learning rate; neither cause is tested here, because the two experiments change batch
# size and learning rate together. Separating them takes a run that changes one at a time, with
# several seeds, since the report's difference is below one point.
#
# The instruments need no such care: the compute table, the gradient health check and the weight
# check are measurements of this run, and they can be read against the report's directly. What to
# take away: instrumentation is cheap (a few statistics every N steps) and catches what accuracy
# curves show too late, a layer whose gradient has vanished or a learning rate that makes some
# layer's weights jump. On the quick profile the model is narrow and the epochs few: read the shapes
# of the curves, not their exact values.

# %% tags=["remove-cell"]
metrics = study.finish(head, S, preds, result, runs)
page.write_metrics(output_dir, {
    **metrics, "record_every": S.config.record_every, "macs_per_image": flop_totals["macs"], "flops_per_image": flop_totals["flops"],
    "results": results.to_dict(orient="index"), "gradient_health": health.to_dict(),
    "weights_below_limit": {n: bool(v) for n, v in check.iloc[:, -1].items()}, "logs": logs,
}, figs)
