"""The notebooks' figures, so that their cells stay orchestration. Each function returns a matplotlib Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..data.sources import Split, read_image
from .calibration import expected_calibration_error, reliability as reliability_table
from ..video import VideoFile
from .temporal import frame_labels


def class_counts(splits) -> plt.Figure:
    """Bar chart of images per class, one bar group per split (a None split, one the run has not, is left out)."""
    table = pd.DataFrame({s.split: s.counts() for s in splits if s is not None})
    fig, ax = plt.subplots(figsize=(8, 3))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("images")
    ax.set_title("images per class")
    fig.tight_layout()
    return fig


def sample_grid(split: Split, per_class: int = 6, seed: int = 0) -> plt.Figure:
    """``per_class`` random images of each class, one row per class."""
    rng = np.random.default_rng(seed)
    classes = split.classes
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.3 * per_class, 1.35 * len(classes)), squeeze=False)
    for c, name in enumerate(classes):
        pool = np.flatnonzero(split.labels == c)
        picks = rng.choice(pool, min(per_class, len(pool)), replace=False) if len(pool) else []
        for j, ax in enumerate(axes[c]):
            ax.axis("off")
            if j < len(picks):
                ax.imshow(read_image(split, int(picks[j])))
        axes[c, 0].set_title(name, loc="left", fontsize=9)
    fig.tight_layout()
    return fig


def quadruplet_grid(split: Split, quads: np.ndarray) -> plt.Figure:
    """Rows of (anchor, positive, negative, negative2), each titled with its class."""
    names = ("anchor", "positive", "negative", "negative2")
    fig, axes = plt.subplots(len(quads), 4, figsize=(6.4, 1.7 * len(quads)), squeeze=False)
    for row, quad in zip(axes, quads):
        for ax, role, i in zip(row, names, quad):
            ax.imshow(read_image(split, int(i)))
            ax.set_title(f"{role}: {split.classes[split.labels[i]]}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def training_curves(metrics: pd.DataFrame) -> plt.Figure:
    """The per-head losses, k = 1 + tanh θ of the three cross modules, and the train accuracy beside the
    selection split's (val, or test under the paper's protocol) per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    epochs = metrics["epoch"]
    for column in [c for c in metrics.columns if c.startswith("loss_")]:
        axes[0].plot(epochs, metrics[column], label=column[5:], ls="-" if "base" in column else "--")
    axes[0].set(title="loss per head", xlabel="epoch")
    axes[0].legend(fontsize=7, ncol=2)
    ks = [c for c in metrics.columns if c in ("k1", "k2", "k3")]
    for column in ks:
        axes[1].plot(epochs, metrics[column], label=f"scale {column[1]}")
    axes[1].set(title="k = 1 + tanh θ" if ks else "k (only the sd cross similarity has it)", xlabel="epoch")
    if ks:
        axes[1].legend(fontsize=8)
    shown = ("train_accuracy", "val_accuracy", "val_mean_class_accuracy", "test_accuracy", "test_mean_class_accuracy")
    for column in [c for c in shown if c in metrics]:
        axes[2].plot(epochs, 100 * metrics[column], label=column.replace("_", " "))
    axes[2].set(title="accuracy (%)", xlabel="epoch")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_heatmap(confusion, classes) -> plt.Figure:
    """Row-normalised confusion matrix (each true class's row sums to 100 %)."""
    counts = np.asarray(confusion, dtype=float)
    rows = counts.sum(1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0) * 100
    fig, ax = plt.subplots(figsize=(0.8 * len(classes) + 2, 0.7 * len(classes) + 1.5))
    sns.heatmap(share, annot=True, fmt=".0f", cmap="Blues", vmin=0, vmax=100, xticklabels=classes,
                yticklabels=classes, ax=ax, cbar_kws={"label": "% of the true class"})
    ax.set(xlabel="predicted", ylabel="true", title="confusion (row-normalised, %)")
    fig.tight_layout()
    return fig


def confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, n: int = 12) -> np.ndarray:
    """Indices of the ``n`` wrong predictions made with the highest probability."""
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:n]


def mistake_gallery(split: Split, probabilities: np.ndarray, n: int = 12, columns: int = 6) -> plt.Figure:
    """The most confident mistakes, titled "true → predicted (p)"."""
    picks = confident_mistakes(probabilities, split.labels, n)
    rows = max(1, -(-len(picks) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        p = probabilities[i]
        ax.imshow(read_image(split, int(i)))
        ax.set_title(f"{split.classes[split.labels[i]]} → {split.classes[p.argmax()]}\n({p.max():.2f})", fontsize=8)
    fig.suptitle("most confident mistakes" if len(picks) else "no mistakes")
    fig.tight_layout()
    return fig


def ablation_bars(table: pd.DataFrame, metric: str = "best_test_accuracy", chance: float | None = None,
                  ceiling: float | None = None, label: str = "test accuracy of the checkpoint chosen on val") -> plt.Figure:
    """Mean ± std (error bars) over seeds of ``metric`` per variant, in %, with chance and the ceiling as lines;
    each bar is labelled with its number of seeds."""
    fig, ax = plt.subplots(figsize=(1.1 * len(table) + 2.5, 3.6))
    x = np.arange(len(table))
    means, stds = 100 * table[f"{metric}_mean"], 100 * table[f"{metric}_std"].fillna(0)
    ax.bar(x, means, 0.6, yerr=stds, capsize=3, color=sns.color_palette("tab10", len(table)))
    for xi, m, n in zip(x, means, table["n"]):
        ax.annotate(f"n={int(n)}", (xi, m), xytext=(0, -12), textcoords="offset points", ha="center", fontsize=7,
                    color="white")
    for value, name, style in ((chance, "chance", ":"), (ceiling, "AU-oracle ceiling", "--")):
        if value is not None:
            ax.axhline(100 * value, color="0.3", ls=style, lw=1)
            ax.annotate(f"{name} {100 * value:.1f} %", (x[-1] + 0.45, 100 * value), ha="right", va="bottom", fontsize=8)
    ax.set_xticks(x, table.index, rotation=25, ha="right", rotation_mode="anchor")
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{label} (%)", fontsize=8)
    ax.set_title("mean ± std over seeds")
    fig.tight_layout()
    return fig


def embedding_pair(points: dict[str, np.ndarray], labels: np.ndarray, classes, scores: pd.DataFrame) -> plt.Figure:
    """2-D embeddings side by side, coloured by class, titled with their silhouette and kNN accuracy (``scores``:
    one row per model, as ``embedding.scores_by_model`` gives)."""
    fig, axes = plt.subplots(1, len(points), figsize=(5.5 * len(points), 5), squeeze=False)
    palette = sns.color_palette("tab10", len(classes))
    for ax, (name, xy) in zip(axes[0], points.items()):
        for c, cls in enumerate(classes):
            keep = labels == c
            ax.scatter(xy[keep, 0], xy[keep, 1], s=8, color=palette[c], label=cls)
        s = scores.loc[name]
        ax.set_title(f"{name}: silhouette {s['silhouette']:.3f}, {int(s['k'])}-NN {100 * s['knn_accuracy']:.1f} %")
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, -1].legend(fontsize=8, markerscale=2, loc="best")
    fig.tight_layout()
    return fig


def cam_grid(split: Split, cams: dict[str, np.ndarray], probabilities: dict[str, np.ndarray] | None = None
             ) -> plt.Figure:
    """One row per image of ``split``, titled with its class: the image, then each model's CAM over it; with
    ``probabilities`` ({name: (N, C)}), each CAM is titled with the model's prediction and its probability, and a
    last panel shows every model's class probabilities as bars."""
    bars = probabilities is not None
    columns = 1 + len(cams) + bars
    fig, axes = plt.subplots(len(split), columns, figsize=(2.2 * columns + 1.2 * bars, 2.2 * len(split)),
                             squeeze=False, width_ratios=[1] * (columns - bars) + [1.6] * bars)
    for i, row in enumerate(axes):
        picture = np.asarray(read_image(split, i).resize(cams[next(iter(cams))].shape[1:][::-1]))
        row[0].imshow(picture)
        row[0].set_title(split.classes[split.labels[i]], fontsize=8)
        for ax, (name, cam) in zip(row[1:], cams.items()):
            ax.imshow(picture)
            ax.imshow(cam[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            p = probabilities[name][i] if bars else None
            ax.set_title(name if p is None else f"{name}: {split.classes[p.argmax()]} {100 * p.max():.0f} %",
                         fontsize=8)
        for ax in row[:columns - bars]:
            ax.axis("off")
        if bars:
            table = pd.DataFrame({name: p[i] for name, p in probabilities.items()}, index=split.classes)
            table.plot.barh(ax=row[-1], width=0.8, legend=i == 0, fontsize=7, xlim=(0, 1))
            row[-1].invert_yaxis()
            row[-1].set_xlabel("probability", fontsize=7)
            if i == 0:
                row[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def csa_grid(split: Split, quadruplet, maps: list[list[np.ndarray]], sample: int = 0) -> plt.Figure:
    """For one quadruplet (indices into ``split``): each branch's image, then its CSA token gates at the 3 scales."""
    branches = ("anchor", "positive", "negative", "negative2")[: len(maps[0])]
    fig, axes = plt.subplots(len(branches), 4, figsize=(8.4, 2.1 * len(branches)), squeeze=False)
    for b, name in enumerate(branches):
        axes[b, 0].imshow(read_image(split, int(quadruplet[b])))
        axes[b, 0].set_title(f"{name}: {split.classes[split.labels[quadruplet[b]]]}", fontsize=9)
        for s in range(3):
            axes[b, s + 1].imshow(maps[s][b][sample], cmap="viridis")
            axes[b, s + 1].set_title(f"scale {s + 1} gates", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    return fig


def reliability(labels: np.ndarray, probabilities: dict[str, np.ndarray], bins: int = 15) -> plt.Figure:
    """One reliability diagram per ``{title: (N, C) probabilities}`` of images labelled ``labels``: each
    confidence bin's accuracy (bars) against the diagonal a calibrated model would follow, the gap shaded, with
    the ECE (``calibration.expected_calibration_error``) in the title."""
    return _reliability_row([(title, p, labels) for title, p in probabilities.items()], bins)


def calibration_pairs(found: dict, split: str = "test", bins: int = 15) -> plt.Figure:
    """``reliability`` before and after temperature scaling on ``split``, for each ``{name: confidence.
    Calibration}``, side by side."""
    return _reliability_row([(f"{name}, {when}", p, found_one.scored[split][1]) for name, found_one in found.items()
                             for when, p in (("before", found_one.scored[split][0]), ("after", found_one.after(split)))],
                            bins)


def _reliability_row(panels: list[tuple[str, np.ndarray, np.ndarray]], bins: int) -> plt.Figure:
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.3), squeeze=False)
    for ax, (title, p, labels) in zip(axes[0], panels):
        full = reliability_table(p, labels, bins).dropna()
        ax.bar(full["low"], full["accuracy"], width=1 / bins, align="edge", edgecolor="black", label="accuracy")
        ax.bar(full["low"], full["confidence"] - full["accuracy"], bottom=full["accuracy"], width=1 / bins,
               align="edge", color="tab:red", alpha=0.3, label="gap")
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.set_title(f"{title}: ECE {100 * expected_calibration_error(p, labels, bins):.1f} %", fontsize=9)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def face_predictions(crops: list, records: list[dict]) -> plt.Figure:
    """One row per face: the aligned crop the model read, and its class probabilities ("no faces found" when
    there are none)."""
    if not crops:
        fig, ax = plt.subplots(figsize=(4, 0.8))
        ax.text(0.5, 0.5, "no faces found", ha="center", va="center")
        ax.axis("off")
        return fig
    fig, axes = plt.subplots(len(crops), 2, figsize=(8, 2.4 * len(crops)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.2]})
    for (ax_img, ax_bar), crop, r in zip(axes, crops, records):
        ax_img.imshow(crop)
        ax_img.set_title(f"{r['file'].split('/')[-1]} · face {r['face']}", fontsize=8)
        ax_img.axis("off")
        names, p = list(r["probabilities"]), list(r["probabilities"].values())
        ax_bar.barh(names, p, color=["C3" if n == r["label"] else "C0" for n in names])
        ax_bar.set_xlim(0, 1)
        ax_bar.invert_yaxis()
        ax_bar.set_xlabel("probability")
    fig.tight_layout()
    return fig


def clip_timeline(result: dict, classes: list[str], predictions: pd.DataFrame | None = None) -> plt.Figure:
    """A SynthFER clip over time (``result``: a ``predict_video`` summary with its ``truth`` CSV): above, the
    smoothed probabilities of the clip's face (raw ones faint); below, one strip each for the true, raw and
    smoothed label of every frame, coloured by class (white: no face). ``predictions``: the clip's table
    (e.g. ``temporal.resmoothed`` with another τ); None reads its predictions.csv."""
    predictions = pd.read_csv(f"{result['out']}/predictions.csv") if predictions is None else predictions
    labels = frame_labels(predictions, result["truth"])
    main = predictions.dropna(subset=["face_id"])
    main = main[main["face_id"] == main["face_id"].value_counts().index[0]] if len(main) else main
    fig, (ax, strips) = plt.subplots(2, 1, figsize=(9, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    colours = plt.get_cmap("tab10")
    for k, c in enumerate(classes):
        ax.plot(main["time_s"], main[f"p_{c}"], color=colours(k), alpha=0.25, linewidth=0.8)
        ax.plot(main["time_s"], main[f"smoothed_{c}"], color=colours(k), label=c)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(f"{result['truth'].split('/')[-1].removesuffix('.csv')}: smoothed (raw faint)", fontsize=9)
    index = {c: k for k, c in enumerate(classes)}
    rows = np.array([[index.get(v, np.nan) if isinstance(v, str) else np.nan for v in labels[column]]
                     for column in ("label", "raw", "smoothed")], dtype=float)  # (3, frames) class indices
    step = float(np.median(np.diff(labels["time_s"]))) if len(labels) > 1 else 1.0
    strips.imshow(rows, aspect="auto", cmap=colours, vmin=0, vmax=9, interpolation="nearest",
                  extent=(labels["time_s"].iloc[0] - step / 2, labels["time_s"].iloc[-1] + step / 2, 2.5, -0.5))
    strips.set_yticks([0, 1, 2], ["truth", "raw", "smoothed"], fontsize=8)
    strips.set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def video_frames(video: str, n: int = 4) -> plt.Figure:
    """``n`` frames spread evenly over ``video`` (e.g. an ``annotated.mp4``), each titled with its time."""
    source = VideoFile(video)
    wanted = set(np.linspace(0, max(0, (source.frames or 1) - 1), n).round().astype(int).tolist())
    frames = [f for f in source if f.index in wanted]
    fig, axes = plt.subplots(1, len(frames), figsize=(2.6 * len(frames), 2.8), squeeze=False)
    for ax, frame in zip(axes[0], frames):
        ax.imshow(frame.image)
        ax.set_title(f"{frame.time:.1f} s", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def accuracy_latency(costs: pd.DataFrame) -> plt.Figure:
    """Test accuracy (mean ± std over seeds, %) against batch-1 CPU latency (p50, ms, log scale) of every trained
    model of ``students.cost_table``; the untrained ones (latency only) are dotted vertical lines."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    trained = costs[costs["seeds"] > 0]
    colours = sns.color_palette("tab10", len(trained))
    for colour, (name, r) in zip(colours, trained.iterrows()):
        ax.errorbar(r["p50 ms"], 100 * r["accuracy"], yerr=100 * np.nan_to_num(r["accuracy_std"]), fmt="o",
                    capsize=3, color=colour, label=f"{name} ({r['input px']} px, {r['runtime']})")
    for name, r in costs[costs["seeds"] == 0].iterrows():
        ax.axvline(r["p50 ms"], color="0.4", ls=":", lw=1)
        ax.annotate(f"{name}, {r['input px']} px", (r["p50 ms"], 0.02), xycoords=("data", "axes fraction"),
                    rotation=90, ha="right", va="bottom", fontsize=7, color="0.3")
    ax.set_xscale("log")
    ax.set_xlabel("CPU latency at batch 1, p50 (ms, one thread, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("accuracy against latency (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def method_diagram() -> plt.Figure:
    """QCS at a glance: four images through one shared encoder; Cross Similarity Attention between the pairs that
    share a class (S: similarity, kept) and the pairs that do not (D: dissimilarity, used to suppress); the cross
    heads exist only in training, the base branch is the model at inference."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=(10, 4.6))
    ax.set(xlim=(0, 10), ylim=(0, 4.6))
    ax.axis("off")

    def box(x, y, w, h, text, colour, size=9):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=colour, ec="#444", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(a, b, colour="#444", style="-|>", **kw):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=10, color=colour, lw=1.2, **kw))

    images = [("anchor a", "class y"), ("positive p", "class y"), ("negative n", "class y′"), ("negative₂ n₂", "class y′")]
    rows = [3.75, 2.75, 1.75, 0.75]
    box(1.75, 0.45, 1.7, 3.75, "shared encoder\n\nIR-50 → 3 scales\nof 49 tokens\n(147 tokens)\n→ ViT", "#dde8f5")
    for (name, cls), y in zip(images, rows):
        box(0.1, y - 0.3, 1.3, 0.6, f"{name}\n{cls}", "#f2f2f2")
        arrow((1.45, y), (1.75, y))
        box(3.8, y - 0.25, 1.1, 0.5, "tokens", "#dde8f5", 8)
        arrow((3.45, y), (3.8, y))
        box(8.55, y - 0.25, 1.35, 0.5, "base + cross\nlogits", "#f2f2f2", 8)
    links = [(0, 1, "S", "#2a7d2a"), (2, 3, "S", "#2a7d2a"), (0, 2, "D", "#b03030"), (1, 3, "D", "#b03030")]
    for i, j, kind, colour in links:
        bend = 0.55 if kind == "S" else -0.45
        arrow((4.95, rows[i]), (4.95, rows[j]), colour, "<|-|>", connectionstyle=f"arc3,rad={bend}")
    box(6.0, 0.45, 2.2, 3.75, "Cross Similarity\nAttention\n\ntokens shared with the\nsame class (S) are\nstrengthened, those\n"
        "shared with the other\nclass (D) suppressed:\n\nA = softmax(φ(S) + k·φ(D)),\nk = 1 + tanh θ\n\n→ cross ViT", "#fbeede", 8)
    arrow((5.65, 2.25), (6.0, 2.25))
    for y in rows:
        arrow((8.2, y), (8.55, y))
    ax.text(5.4, 4.45, "S: same class", color="#2a7d2a", fontsize=8, ha="center")
    ax.text(5.4, 0.15, "D: other class", color="#b03030", fontsize=8, ha="center")
    ax.text(5.0, -0.25, "Training runs all four branches (the mean cross-entropy of the 8 heads); inference keeps only "
            "one image's path through the shared encoder and its base head.", fontsize=8.5, ha="center",
            style="italic")
    return fig
