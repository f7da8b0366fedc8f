# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment 2 step by step
#
# This tutorial walks through assignment 2 of KTH's DD2424 (*Deep Learning in Data
# Science*) in Python, with mlplab as the toolbox: a two-layer network classifies CIFAR-10
# images, its gradients are checked against numerical ones, it is trained with a cyclical
# learning rate, and the strength of its L2 regularisation is searched for.
#
# Every step names the library function that implements it, so that you can open the source
# and read how it is done. The tutorial trains on a small part of CIFAR-10 (5,000 training
# images) so that it runs in well under a minute; the assignment's full-size experiments are
# the recipes `assignment2/*`, which `mlplab train` and `mlplab reproduce` run.
#
# | step | library |
# |---|---|
# | load the images | `mlplab.load_data` (`src/mlplab/data/cifar10.py`) |
# | split and standardise | `mlplab.data.make_splits`, `mlplab.data.standardize` |
# | the network | `mlplab.Network.build` (`src/mlplab/nn/network.py`, `nn/layers.py`) |
# | gradient check | `mlplab.gradcheck.gradcheck` (`src/mlplab/gradcheck/check.py`) |
# | update rule | `mlplab.make_optimizer` (`src/mlplab/optim/optimizers.py`) |
# | cyclical learning rate | `mlplab.optim.Cyclic` (`src/mlplab/optim/schedules.py`) |

# %%
# %matplotlib inline
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

import mlplab
from mlplab.data import make_splits, standardize, to_hwc
from mlplab.gradcheck import analytic_gradients, compare, gradcheck, numerical_gradients
from mlplab.optim import Constant, Cyclic

# Matrices this small multiply fastest, and reproducibly,
# on one BLAS thread.
threadpool_limits(limits=1, user_api="blas")
# tqdm (progress bars) asks for ipywidgets in a notebook
warnings.filterwarnings("ignore", message="IProgress not found")

# One generator, made from one seed, draws everything random
# below (the split, the weights, the shuffles, the values of
# lambda), in order: the same seed gives the same numbers on
# every run.
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Load CIFAR-10
#
# `mlplab.load_data()` reads the data set named by the environment variable `MLPLAB_DATA`
# (a directory of images, CIFAR-10's official batches or an `.npz` of arrays) or, when it is
# not set, downloads CIFAR-10 once. The decoded arrays are cached, so the second call takes
# a second. Every image is one row of `32 * 32 * 3 = 3072` bytes, the red plane first, then
# the green, then the blue (CIFAR-10's own order).

# %%
raw = mlplab.load_data(progress=False)
print("training images:", raw.x_train.shape, raw.x_train.dtype)
print("test images:    ", raw.x_test.shape)
print("classes:", ", ".join(raw.classes))

# %%
fig, axes = plt.subplots(2, 10, figsize=(12, 3))
for k, name in enumerate(raw.classes):
    first_two = np.flatnonzero(raw.y_train == k)[:2]  # two images of class k
    for row, image in enumerate(to_hwc(raw.x_train[first_two])):
        axes[row, k].imshow(image)
        axes[row, k].axis("off")
    axes[0, k].set_title(name, fontsize=9)
fig.suptitle("Two training images of each class")
fig.tight_layout()

# %% [markdown]
# ## 2. Split and standardise
#
# A network learns from the *training* split, we choose its settings by its score on the
# *validation* split, and we report its score on the *test* set, which played no part in
# either choice.
#
# Before training, every one of the 3072 input dimensions is standardised: the pixels are
# scaled to [0, 1], then the dimension's mean is subtracted and the result divided by its
# standard deviation. Both statistics come from the training split **only**; the validation
# and test images are transformed with the same numbers, as a new image would be.
#
# `make_splits(raw, "5000/1000", rng)` draws 5,000 training and 1,000 validation images from
# CIFAR-10's 50,000 training images and standardises them. (The recipes name bigger splits:
# `"batch"` is the course's data batch 1 for training and batch 2 for validation, `"45k"`
# keeps 5,000 of the 50,000 for validation.)

# %%
splits = make_splits(raw, "5000/1000", rng)
X, y = splits.x_train, splits.y_train
X_val, y_val = splits.x_val, splits.y_val
print("train", X.shape, X.dtype, " validation", X_val.shape, " test", splits.x_test.shape)
print(f"training split: mean {X.mean():+.4f}, std {X.std():.4f}")
print(f"validation split: mean {X_val.mean():+.4f}, std {X_val.std():.4f} (not exactly 0 and 1)")

# %% [markdown]
# `splits.mean` and `splits.std` keep the training statistics. `mlplab.data.standardize`
# applies them to any new pixels: it is how the test set (and a saved model) sees its input.

# %%
first_test = standardize(raw.x_test[:5], splits.mean, splits.std)
print("same as splits.x_test:", np.array_equal(first_test, splits.x_test[:5]))

# %% [markdown]
# ## 3. The two-layer network
#
# The network of assignment 2 maps an image `x` (3072 numbers) to 10 class scores through
# one hidden layer of `m = 50` units:
#
# ```
# s1 = x W1 + b1        h = max(0, s1)        s = h W2 + b2        p = softmax(s)
# ```
#
# mlplab stores one sample per **row** (`X` is `n x d`, `W1` is `d x m`), so its formulas
# are the transposes of the course's column convention (`W1 x + b1`). The cost is the mean
# cross-entropy (the *loss*) plus the L2 penalty on the weights, never the biases:
#
# ```
# J = 1/n sum_i -log p_i[y_i]  +  lambda (||W1||^2 + ||W2||^2)
# ```
#
# `Network.build(d_in, hidden, n_classes, rng=..., init=...)` draws the weights from the
# generator; `init="course"` is the assignment's `N(0, 1/d_in)`. The network is a list of
# layers (`net.layers`), each with a `forward` and a `backward`: read `Dense` and `ReLU`
# in `src/mlplab/nn/layers.py`.

# %%
net = mlplab.Network.build(3072, [50], 10, rng=rng, init="course")
print(net.describe())
for name, p in net.params().items():
    print(f"  {name:10} {p.shape}")

# %% [markdown]
# Before any training the network guesses: every class gets a probability near 1/10, so
# the loss is near `-log(1/10) = ln 10 = 2.30` and the accuracy near 10 %. This is the first
# check of any new network. (The cost adds the penalty `lambda sum ||W||^2`: every weight
# starts with variance `1/d_in`, so `||W1||^2` is about 50 and `||W2||^2` about 10, and the
# penalty about `0.01 x 60 = 0.6`.)

# %%
start = net.evaluate(X_val, y_val, lam=0.01)
print({k: round(v, 4) for k, v in start.items()}, " ln 10 =", round(math.log(10), 4))

# %% [markdown]
# ## 4. Check the gradients
#
# Backpropagation computes the gradient of the cost with respect to every parameter
# (`Network.backward`, which calls each layer's `backward` in reverse order). A mistake in
# one of those formulas does not stop training: it makes it worse, silently. So we compare
# the analytic gradient `a` with a numerical one, the centred difference
#
# ```
# n_j = (J(theta + h e_j) - J(theta - h e_j)) / (2 h)
# ```
#
# for every single parameter `theta_j`, by the relative error
# `|a_j - n_j| / max(eps, |a_j| + |n_j|)`. In double precision a correct gradient gives
# errors around `1e-7` or smaller; a wrong one gives errors near 1.
#
# One difference costs two evaluations of the cost, so the check runs on a small problem as
# the course does: the first 20 input dimensions, 5 images, 10 hidden units, in `float64`.
# `mlplab.gradcheck.gradcheck` returns a report per parameter (the same check is the
# command `mlplab gradcheck`).

# %%
X_check = X[:5, :20].astype(np.float64)
y_check = y[:5]
small = mlplab.Network.build(20, [10], 10, rng=rng, init="course", dtype="float64")
report = gradcheck(small, X_check, y_check, lam=0.01)
print(report.table())

# %%
names = [p.name for p in report.parameters]
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.bar(names, [p.max_rel_error for p in report.parameters], label="largest")
ax.bar(names, [p.mean_rel_error for p in report.parameters], label="mean")
ax.axhline(1e-6, color="k", ls="--", lw=1, label="1e-6")
ax.set_yscale("log")
ax.set_ylabel("relative error")
ax.set_title("Analytic against numerical gradients")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# What does a failing check look like? The same check by hand, with the functions
# `mlplab.gradcheck.analytic_gradients`, `numerical_gradients` and `compare`, and a
# typical mistake planted in the analytic gradients: the L2 term's gradient taken as
# `lambda W` instead of `2 lambda W`. The weights' largest errors jump to about 1; the
# biases, which have no L2 term, stay correct. That is how a check points at the
# faulty formula.

# %%
lam = 0.01
ana = analytic_gradients(small, X_check, y_check, lam)
num = numerical_gradients(small, X_check, y_check, lam)
buggy = dict(ana)
for name in small.decay_names():  # the dense weights, the only parameters under L2
    buggy[name] = ana[name] - lam * small.params()[name]
print(compare(small, buggy, num).table())

# %% [markdown]
# ## 5. Can it learn at all? Overfit 100 images
#
# A second sanity check before long runs: with no regularisation, a network of 150,000
# weights must learn 100 images by heart. We write the training loop here, in a few lines,
# as the assignment asks; mlplab's own (`src/mlplab/train/trainer.py`) adds reshuffling into
# preallocated buffers, checkpoints and early stopping around the same steps.
#
# One *update* takes a mini-batch of `B` images, computes the gradients
# (`Network.loss_grad`: forward pass, loss, backward pass) and lets the optimiser change
# the weights (`Optimizer.step`). The optimiser adds the L2 term's gradient `2 lambda W` to
# the weights named by `net.decay_names()`, so plain SGD does
# `W <- W - eta (dL/dW + 2 lambda W)`. Every epoch sees the training images in a new random
# order. Every `record_every` updates, the loop measures cost, loss and accuracy on (the first
# 1,000 images of) the training split and on the validation split.


# %%
def train(net, X, y, X_val, y_val, *, lam, schedule, updates, rng, batch_size=100, record_every=50):
    """Mini-batch gradient descent; returns the history, one dict per record point."""
    optimizer = mlplab.make_optimizer("sgd", l2=lam, decay_names=net.decay_names())
    params, grads = net.params(), net.grads()  # dicts of the arrays themselves
    per_epoch = len(X) // batch_size
    history = []

    def record(step):
        point = {"step": step, "lr": schedule(step)}
        for split, (Xs, ys) in {"train": (X[:1000], y[:1000]), "val": (X_val, y_val)}.items():
            for key, value in net.evaluate(Xs, ys, lam).items():  # cost, loss, accuracy
                point[f"{split}_{key}"] = value
        history.append(point)

    record(0)
    for t in range(updates):
        if t % per_epoch == 0:
            order = rng.permutation(len(X))  # a new order every epoch
        batch = order[(t % per_epoch) * batch_size : (t % per_epoch + 1) * batch_size]
        lr = schedule(t)
        net.loss_grad(X[batch], y[batch])  # forward and backward: fills grads
        optimizer.step(params, grads, lr)  # W <- W - lr (dL/dW + 2 lam W)
        if (t + 1) % record_every == 0:
            record(t + 1)
    return history


# %% [markdown]
# The settings of the course's sanity check (they are the recipe `assignment2/overfit`):
# 100 images, `lambda = 0`, batches of 10, a constant learning rate of 0.05, 200 epochs.

# %%
tiny = mlplab.Network.build(3072, [50], 10, rng=rng, init="course")
overfit = train(
    tiny,
    X[:100],
    y[:100],
    X_val,
    y_val,
    lam=0.0,
    schedule=Constant(0.05),
    updates=2000,
    rng=rng,
    batch_size=10,
    record_every=200,
)
print(
    f"training accuracy {overfit[-1]['train_accuracy']:.0%}, "
    f"training loss {overfit[-1]['train_loss']:.4f}, "
    f"validation accuracy {overfit[-1]['val_accuracy']:.1%}"
)

# %% [markdown]
# All 100 images are learnt, and the validation accuracy shows how little that teaches the
# network about the other images: it remembered, it did not generalise.
#
# ## 6. A cyclical learning rate
#
# The learning rate `eta` is the most sensitive setting of gradient descent. Instead of
# choosing one value, a cyclical learning rate (Smith, 2017) lets it climb linearly from
# `eta_min` to `eta_max` in `n_s` updates and fall back in another `n_s`: one cycle is
# `2 n_s` updates. High rates move fast across the cost surface; the low rate at the end of
# each cycle settles into a minimum. `mlplab.optim.Cyclic(eta_min, eta_max, n_s)` is a
# function of the update number (the recipes call it `schedule = "cyclic"`).
#
# With 5,000 images and batches of 100 an epoch is 50 updates; we take `n_s = 200`
# (4 epochs) and 3 cycles, 1,200 updates in all.

# %%
n_s, cycles = 200, 3
schedule = Cyclic(1e-5, 1e-1, n_s)
updates = 2 * n_s * cycles
steps = np.arange(updates + 1)
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot(steps, [schedule(t) for t in steps])
ax.set_xlabel("update step")
ax.set_ylabel("learning rate")
ax.set_title(f"Cyclic(1e-5, 1e-1, n_s={n_s}), {cycles} cycles")
fig.tight_layout()

# %% [markdown]
# Now the real training: the network of section 3, `lambda = 0.01` as in the course's
# exercise 3, a record every 40 updates.

# %%
history = train(
    net, X, y, X_val, y_val, lam=0.01, schedule=schedule, updates=updates, rng=rng, record_every=40
)
final = history[-1]
print(
    f"after {final['step']} updates: training accuracy {final['train_accuracy']:.1%}, "
    f"validation accuracy {final['val_accuracy']:.1%}"
)


# %%
def plot_history(history, title):
    """Cost, loss and accuracy on the training and validation splits."""
    steps = [p["step"] for p in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key in zip(axes, ("cost", "loss", "accuracy"), strict=True):
        ax.plot(steps, [p[f"train_{key}"] for p in history], label="training")
        ax.plot(steps, [p[f"val_{key}"] for p in history], label="validation")
        ax.set_xlabel("update step")
        ax.set_title(key)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


fig = plot_history(history, "3072-50-10, lambda = 0.01, 3 cycles of 2 x 200 updates")

# %% [markdown]
# The curves follow the learning rate: they improve fastest while the rate is low, at the
# end of each cycle, and wander while it is high. The gap between training and validation
# is what regularisation is for.
#
# The test set is touched once, for the final score:

# %%
test = net.evaluate(splits.x_test, splits.y_test, lam=0.01)
print(f"test accuracy {test['accuracy']:.1%} (chance: 10 %)")

# %% [markdown]
# ## 7. Searching for lambda
#
# The regularisation strength `lambda` is chosen by the validation accuracy. Its good values
# span orders of magnitude, so the search draws its exponent: `lambda = 10^l` with `l`
# uniform in `[-5, -1]` (a *coarse* search), trains a network for each value, and then
# searches again (*fine*) in a narrow range around the best one.
#
# Each trial here trains for 2 cycles of `n_s = 200` updates. A score measured on 1,000
# images would vary by about 1.5 points from one draw of the images to another (the
# standard deviation of a binomial proportion near 45 %), as much as the differences we are
# looking for, so the split holds 5,000 validation images (0.7 points). With only 8 coarse
# values we draw one in each eighth of the interval, so that no part of it is left empty
# (`mlplab search` draws 20 values, each uniform in the whole interval).

# %%
search_splits = make_splits(raw, "5000/5000", rng)


def trial(lam):
    """Train a fresh network with this lambda; return its final history point."""
    net = mlplab.Network.build(3072, [50], 10, rng=rng, init="course")
    s = search_splits
    history = train(
        net,
        s.x_train,
        s.y_train,
        s.x_val,
        s.y_val,
        lam=lam,
        schedule=Cyclic(1e-5, 1e-1, 200),
        updates=800,
        rng=rng,
        record_every=800,
    )
    return history[-1]


# one exponent drawn uniformly in each eighth of [-5, -1]
coarse_l = -5 + 4 * (np.arange(8) + rng.random(8)) / 8
coarse = [trial(10**e) for e in coarse_l]
best_l = coarse_l[int(np.argmax([p["val_accuracy"] for p in coarse]))]
fine_l = np.sort(rng.uniform(best_l - 0.5, best_l + 0.5, size=4))
fine = [trial(10**e) for e in fine_l]
for stage, ls, points in (("coarse", coarse_l, coarse), ("fine", fine_l, fine)):
    print(f"{stage}:")
    for e, p in zip(ls, points, strict=True):
        print(
            f"  lambda = 10^{e:5.2f}  training {p['train_accuracy']:.1%}"
            f"  validation {p['val_accuracy']:.1%}"
        )

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
for stage, ls, points, marker in (("coarse", coarse_l, coarse, "o"), ("fine", fine_l, fine, "s")):
    for ax, split in zip(axes, ("val", "train"), strict=True):
        ax.plot(ls, [p[f"{split}_accuracy"] for p in points], marker, label=stage)
for ax, title in zip(axes, ("validation accuracy", "training accuracy"), strict=True):
    ax.set_xlabel("log10 lambda")
    ax.set_title(title)
    ax.legend(fontsize=8)
fig.suptitle("After 2 cycles, by lambda")
fig.tight_layout()

# %% [markdown]
# Read the plots from left to right. With a small `lambda` the network fits its 5,000
# training images far better than new ones (nearly twice as well): it overfits. A larger
# `lambda` pulls the training accuracy down towards the validation accuracy, while the
# validation accuracy itself moves by a point or so, hardly more than its noise. Towards
# `lambda = 0.1` the training accuracy falls fast; a little further the network underfits
# and both accuracies fall. Such a flat top is typical: a search finds a range of good
# values rather than one best value, which is why the fine stage of `mlplab search`
# averages several trainings per value. The fewer the training images, the more
# regularisation they need: on 45,000 images the best values lie lower, around `10^-3`
# to `10^-2.5`.
#
# The library runs this search for you, on Optuna: `mlplab search` draws the values, trains
# the trials (in parallel with `--workers`, or on several machines sharing one database),
# derives the fine interval from the smoothed coarse scores, and keeps every trial in a
# study that survives an interruption. The second command trains the final network with the
# best value found:
#
# ```bash
# mlplab search --recipe assignment2/search --workers 2
# mlplab train --recipe assignment2/final --from-study assignment2-search
# ```
#
# The search space is a file beside the recipe (`src/mlplab/recipes/assignment2/search.space`),
# and the trials' settings are a recipe like any other, which `mlplab.load_recipe` reads:

# %%
recipe = mlplab.load_recipe("assignment2/search")
print(recipe.description)
for field in ("split", "hidden", "init", "lam", "batch_size", "schedule", "eta_min", "eta_max"):
    print(f"  {field:10} = {getattr(recipe, field)!r}")
print(f"  n_s        = {recipe.n_s_k:g} epochs,  cycles = {recipe.cycles}")

# %% [markdown]
# A trial of this tutorial, in recipe form, is the recipe `assignment2/ex3` with
# `split = "5000/5000"`, `n_s = 200` and `cycles = 2`; any field of a recipe can be changed
# on the command line:
#
# ```bash
# mlplab train --recipe assignment2/ex3 --set split=5000/5000 \
#     --set n_s=200 --set cycles=2 --set lam=0.001
# ```
#
# ## 8. What this tutorial guarantees
#
# These checks run every time the documentation is built, so a change to the library that
# breaks a step above fails the build.

# %%
assert report.max_rel_error < 1e-6, report.table()
assert compare(small, buggy, num).max_rel_error > 1e-2  # the planted mistake is caught
assert abs(start["loss"] - math.log(10)) < 0.2  # an untrained network guesses
assert overfit[-1]["train_accuracy"] == 1.0  # 100 images learnt by heart
assert schedule(0) == 1e-5 and math.isclose(schedule(n_s), 1e-1) and schedule(2 * n_s) == 1e-5
assert final["val_accuracy"] > 0.30 and test["accuracy"] > 0.30  # chance is 0.10
assert max(p["val_accuracy"] for p in coarse + fine) > 0.30
# regularisation closes the gap: the largest lambda fits the training images far less
assert coarse[-1]["train_accuracy"] < coarse[0]["train_accuracy"] - 0.05
print("all checks passed")
