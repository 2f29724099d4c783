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
# # 04 · Inside a ResNet-18 run: compute, gradient flow, weight updates and the batch size
#
# Accuracy curves show *that* a network learns; this notebook looks at *how*. We count what one
# forward pass costs, layer by layer; we record, every few dozen optimiser steps, how large each
# layer's gradient is and how much each layer's weights move; and we run the same training twice
# with a different batch size and learning rate to see what that choice changes.
#
# This reproduces report 003 of the reference set (ResNet-18 with a 3x3 stem on CIFAR-10, 25
# epochs, SGD with momentum 0.9 and weight decay 5e-4, cosine annealing; crop, flip and colour
# jitter 0.2, CIFAR-10 normalisation; experiment 1: batch 64 at lr 0.15, experiment 2: batch 128 at
# lr 0.20; gradients and weights recorded every 100 batches). The `quick` default trains a narrow
# copy for a few epochs on the bundle's synthetic data on a laptop CPU, recording more often;
# `full` is the report's protocol and wants a GPU.

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from helpers import evaluate as ev
from helpers import instrument, page, plots
from helpers.models import build_model, count_parameters, summary
from helpers.profiles import describe, settings
from helpers.train import fit

# %% tags=["parameters"]
profile = "quick"       # smoke | quick | full
dataset = None          # None: the profile's dataset (synthetic for smoke/quick, CIFAR-10 for full)
seed = None             # None: 42 (the report gives no seed)
device = "auto"         # auto | cpu | cuda | mps
output_dir = "../reports/interactive/04_worksheet_analysis"  # figures/ and metrics.json go here
epochs = None           # None: the profile's number of epochs
record_every = None     # None: the profile's interval in optimiser steps (full: 100, as in the report)
log_to = "none"         # none | tensorboard | wandb: also copy the runs' logs there (if installed)

# %%
S = settings("worksheet_analysis", profile, dataset=dataset, seed=seed, device=device, epochs=epochs,
             record_every=record_every)
if log_to not in instrument.LOGGERS:
    raise ValueError(f"log_to must be one of {', '.join(instrument.LOGGERS)}, not {log_to!r}")
data = S.load_data()
figs = page.Figures(output_dir)
plots.style()
print(describe(S))
print(data)

# %% [markdown]
# ## 1. The data
#
# One training image per class. The images are normalised with the CIFAR-10 channel statistics
# the report uses (mean 0.4914, 0.4822, 0.4465; std 0.2023, 0.1994, 0.2010) whatever the dataset,
# so that the protocol stays the report's.

# %%
figs.save(plots.one_per_class(data.train_images, data.train_labels, data.classes), "samples_per_class")

# %% [markdown]
# ## 2. The model
#
# ResNet-18 for 32x32 inputs: a 3x3 stride-1 stem instead of the 7x7 stride-2 one and no max-pool,
# then four stages of two BasicBlocks (64, 128, 256, 512 channels). Depth counts the layers with
# weights on the main path (17 convolutions and the classifier); the memory footprint is the fp32
# weights alone.

# %%
model = build_model("resnet18_cifar", data.num_classes)
layers_table, memory = summary(model)
weights = [name for name, _ in instrument.layers(model)]
model_table = pd.Series({
    "total parameters": f"{count_parameters(model):,}",
    "trainable parameters": f"{count_parameters(model, trainable_only=True):,}",
    "depth (weight layers on the main path)": sum("downsample" not in n for n in weights),
    "residual blocks": int((layers_table["layer"].str.startswith("BasicBlock")).sum()),
    "memory footprint of the weights (MB, fp32)": round(memory["params"], 1),
    "this run's width": S.train.width,
    "this run's parameters": f"{count_parameters(build_model('resnet18_cifar', data.num_classes, width=S.train.width)):,}",
}, name="ResNet-18 (width 1)")
model_table.to_frame()

# %% [markdown]
# The report lists 11,173,962 parameters, 18 layers, 8 residual blocks and about 42.6 MB.
#
# ## 3. What a forward pass costs
#
# FLOPs are counted by `torch.utils.flop_counter` on one image. The counter's FLOPs count a
# multiply-add as two operations; report 003's "0.5567 GFLOPs" is the number of multiply-adds
# (MACs), so both are shown. Only convolutions and the linear layer are counted: normalisation,
# activations and additions are a rounding error in comparison.

# %%
flop_table, flop_totals = instrument.flops(model)
figs.save(plots.flops_per_layer(flop_table), "flops_per_layer")
display(pd.Series({
    "MACs per image (G)": flop_totals["macs"] / 1e9, "FLOPs per image (G, 2 per MAC)": flop_totals["flops"] / 1e9,
    "FLOPs per parameter": flop_totals["flops_per_param"], "MACs per parameter": flop_totals["macs"] / flop_totals["params"],
}).round(4).to_frame("value"))
shown = flop_table.assign(**{"MACs": flop_table["macs"].map("{:,}".format),
                             "share (%)": (100 * flop_table["share"]).round(2)})
shown[["layer", "MACs", "share (%)", "params"]].set_index("layer")

# %%
top = flop_table.nlargest(1, "share").iloc[0]
same = int((flop_table["macs"] == top["macs"]).sum())
display(Markdown(
    f"One image costs **{flop_totals['macs'] / 1e9:.4f} G multiply-adds** ({flop_totals['flops'] / 1e9:.4f} GFLOPs "
    f"counting two per multiply-add; report 003: 0.5567 G). **{same}** convolutions tie for the largest share, "
    f"{100 * top['share']:.2f}% each: when a stage halves the resolution it doubles the channels, so a 3x3 "
    f"convolution costs the same at every stage (the report's 6.78% per layer). Parameters behave the other "
    f"way: the last stage holds most of them but computes on a 4x4 grid, so FLOPs per parameter fall from the "
    f"first stage to the last."))

# %% [markdown]
# ## 4. Two experiments: batch size and learning rate
#
# Experiment 1 uses batches of 64 at a peak learning rate of 0.15, experiment 2 batches of 128 at
# 0.20; everything else is shared, including the cosine schedule over all epochs. During training,
# every `record_every` optimiser steps, the engine records each layer's gradient (after the
# backward pass) and the change of its weights (after the step). Both runs are cached with their
# records, so a re-run draws every plot below without training.

# %%
configs = {
    "exp 1 (batch 64, lr 0.15)": S.train.replace(name="worksheet-exp1"),
    "exp 2 (batch 128, lr 0.20)": S.train.replace(name="worksheet-exp2", batch_size=S.extra["batch_size_2"],
                                                   lr=S.extra["lr_2"]),
}
runs = {name: fit(c, data) for name, c in configs.items()}
histories = {name: run.history for name, run in runs.items()}
for name, run in runs.items():
    where = instrument.log_run(run, to=log_to)
    if where is not None:
        print(f"{name}: {log_to} logs in {where}")

# %% [markdown]
# There is no validation split in this protocol: like the report, the test split is evaluated after
# every epoch. The convergence epoch is the first epoch whose test
# accuracy is within 95% of the final one.

# %%
n_train = len(data.train_labels)


def result(name, run):
    h = run.history
    last = h.iloc[-1]
    return {
        "final test acc (%)": 100 * last["test_acc"], "final train acc (%)": 100 * last["train_acc"],
        "gap (points)": 100 * (last["train_acc"] - last["test_acc"]), "test loss": last["test_loss"],
        "train loss": last["train_loss"], "training time (s)": h["seconds"].sum(),
        "batches per epoch": int(np.ceil(n_train / run.config.batch_size)),
        "convergence epoch": ev.epochs_to_reach(h, 0.95 * last["test_acc"], column="test_acc"),
    }


results = pd.DataFrame({name: result(name, run) for name, run in runs.items()})
results.round(3)

# %% [markdown]
# Progress at selected epochs (the report shows epochs 1, 5, 10, 15, 20 and 25 of 25; here the same
# fractions of this run's epochs).

# %%
n_epochs = S.train.epochs
picked = sorted({1, *(int(round(f * n_epochs)) for f in (0.2, 0.4, 0.6, 0.8, 1.0))} - {0})
progress = pd.concat({name: h.set_index("epoch").loc[picked, ["train_loss", "train_acc", "test_loss", "test_acc"]]
                      for name, h in histories.items()}, axis=1)
progress.round(3)

# %% [markdown]
# Loss and accuracy curves of both experiments (train solid, test dotted).

# %%
figs.save(plots.training_curves(histories, "loss"), "loss_curves")
figs.save(plots.training_curves(histories, "acc"), "accuracy_curves")

# %%
(e1, r1), (e2, r2) = results.items()
first = {name: h["test_acc"].iloc[0] for name, h in histories.items()}
display(Markdown(
    f"Final test accuracy: **{r1['final test acc (%)']:.2f}%** for {e1} and **{r2['final test acc (%)']:.2f}%** for "
    f"{e2} (report 003: 93.10% and 92.39%). After the first epoch: {100 * first[e1]:.1f}% and {100 * first[e2]:.1f}% "
    f"(report: 28.59% and 35.43%). The smaller batch takes {r1['batches per epoch']:.0f} steps per epoch against "
    f"{r2['batches per epoch']:.0f}; its train-test gap is {r1['gap (points)']:.1f} points against "
    f"{r2['gap (points)']:.1f} (report: 4.15 and 5.38)."))

# %% [markdown]
# ## 5. Gradient flow
#
# Mean absolute gradient of every layer, from the stem (left) to the classifier (right), at the
# first, a middle and the last record. In a healthy network the curve has no cliff: early layers may
# get smaller gradients than late ones, but not by many orders of magnitude. Residual shortcuts
# are what keeps the early layers reachable.

# %%
gradients = {name: run.gradients for name, run in runs.items()}
figs.save(plots.gradient_flow(gradients, "mean_abs"), "gradient_flow")

# %% [markdown]
# The same records over the whole run: one row per layer, one column per record, colour = log10
# of the layer's gradient norm. Read it left to right for how gradients shrink as the learning
# rate anneals and the loss falls, top to bottom for how they differ across depth.

# %%
figs.save(plots.layer_heatmaps(gradients, "norm", "gradient norm", "Gradient norm by layer over training"),
          "gradient_norm_heatmap")

# %% [markdown]
# The per-layer range over all records of experiment 1, and how many records were flagged
# *vanishing* (mean |gradient| below 1e-7) or *exploding* (gradient norm above 10).

# %%
ranges = instrument.gradient_ranges(gradients[e1])
display(ranges.style.format({c: "{:.2e}" for c in ranges.columns if "records" not in c}))
flags = {name: (int(g["vanishing"].sum()), int(g["exploding"].sum())) for name, g in gradients.items()}
final_norm = {name: float(g[g["step"] == g["step"].max()]["norm"].mean()) for name, g in gradients.items()}
stage_mean = ranges["norm median"].groupby(lambda layer: layer.split(".")[0]).median()
display(Markdown(
    "Flagged records (vanishing, exploding): " + "; ".join(f"{n}: {v} and {x}" for n, (v, x) in flags.items())
    + f". Mean gradient norm per layer at the last record: "
    + ", ".join(f"{n} {v:.2e}" for n, v in final_norm.items())
    + " (report 003: 0.00342 at convergence). Median gradient norm by stage in experiment 1: "
    + ", ".join(f"{stage} {v:.1e}" for stage, v in stage_mean.items()) + "."))

# %% [markdown]
# ## 6. Weight updates
#
# The relative update of a layer is how far its weights moved since the previous record, divided by
# their size. Large early on, when the network leaves its random initialisation, and shrinking as
# the cosine schedule takes the learning rate to zero. The lines show the stem, the last
# convolution of each stage and the classifier.

# %%
updates = {name: run.updates for name, run in runs.items()}
stage_last = [[n for n in weights if n.startswith(f"layer{i}.") and "downsample" not in n][-1] for i in range(1, 5)]
figs.save(plots.update_lines(updates, [weights[0], *stage_last, weights[-1]]), "weight_updates")
figs.save(plots.layer_heatmaps(updates, "relative_update", "relative update", "Relative weight update by layer"),
          "weight_update_heatmap")

# %% [markdown]
# Layers ranked by their mean relative update over training (experiment 1), with the weights'
# final standard deviation.

# %%
ranking = instrument.update_ranking(updates[e1])
ranking.head(10).style.format({"mean relative update": "{:.2e}", "max relative update": "{:.2e}",
                               "final weight std": "{:.4f}"})

# %%
top3 = ", ".join(ranking.index[:3])
by_stage = ranking.groupby(lambda layer: layer.split(".")[0])["mean relative update"].mean().sort_values(ascending=False)
display(Markdown(
    f"The three layers that moved most (relative to their size) are {top3}. By stage, the mean relative update "
    f"ranks " + " > ".join(by_stage.index) + " (report 003: the classifier first, then layer 4 down to layer 1). "
    "A relative update says how much of a layer is rewritten per interval: a layer with a large weight norm "
    "can take a big absolute step and still change little relative to its size."))

# %% [markdown]
# ## 7. The learning-rate schedules
#
# Cosine annealing from each experiment's peak to zero over the run, as the engine applied it
# (the value each epoch started with).

# %%
figs.save(plots.learning_rates(histories), "learning_rate")
pd.DataFrame({name: h.set_index("epoch")["lr"] for name, h in histories.items()}).loc[picked].round(4)

# %% [markdown]
# ## Conclusion

# %%
display(Markdown(f"""
* **Compute.** {flop_totals['macs'] / 1e9:.4f} G multiply-adds per image at width 1, spread evenly over the
  3x3 convolutions ({100 * top['share']:.2f}% each for the largest), {flop_totals['macs'] / flop_totals['params']:.0f}
  multiply-adds per parameter.
* **Batch size and learning rate.** {e1}: {r1['final test acc (%)']:.2f}% test, gap {r1['gap (points)']:.1f} points;
  {e2}: {r2['final test acc (%)']:.2f}% test, gap {r2['gap (points)']:.1f} points.
* **Gradients.** {sum(v for v, _ in flags.values())} vanishing and {sum(x for _, x in flags.values())} exploding
  records over both runs.
* **Updates.** Largest relative updates: {top3}.
"""))

# %% [markdown]
# What to take away: instrumentation is cheap (a few statistics every N steps) and catches the
# failures accuracy curves show too late: a layer whose gradient has vanished, or a learning rate
# that makes some layer's weights jump. The batch-size comparison is a single seed per setting, so
# a difference of less than a point is within noise; the report's two runs differ by 0.71 points.
# On the `quick` profile the model is narrow, the epochs few and the data synthetic: read the shapes
# of the curves, not their exact values.

# %%
page.write_metrics(output_dir, {
    "profile": profile, "dataset": S.dataset, "epochs": S.train.epochs, "width": S.train.width,
    "record_every": S.train.record_every, "macs_per_image": flop_totals["macs"], "flops_per_image": flop_totals["flops"],
    "results": results.to_dict(), "flagged_records": flags, "final_gradient_norm": final_norm,
    "top_updated_layers": list(ranking.index[:3]),
}, figs)
