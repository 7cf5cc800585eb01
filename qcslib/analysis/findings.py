"""The notebooks' "What we found": markdown bullet lists computed from their results, one function per
notebook (04's is ``ablation.findings``, 08's ``paper.findings``). Each number says what it was measured on."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .calibration import ECE_GOAL, expected_calibration_error, scaled
from ..data.sources import Split
from ..train.rundir import Run
from .cam import resolves
from .embedding import score_summary
from .metrics import PAPER_ACCURACY
from .stats import family_sentence, verdict

if TYPE_CHECKING:
    from ..train.evaluation import Scores


def data(train: Split, splits, oracle: dict | None, report_file: str | Path) -> str:
    """01: the dataset and its splits, the class imbalance of ``train``, what was skipped, and the AU-oracle
    ceiling (``oracle``; None off SynthFER)."""
    splits = [s for s in splits if s is not None]
    n = pd.Series(train.counts())
    skipped = sum(len(s.skipped) for s in splits)
    lines = [f"- **{train.dataset}** at `{train.root}`: " + ", ".join(f"{len(s)} {s.split}" for s in splits)
             + f" images, {len(train.classes)} classes ({', '.join(train.classes)}).",
             f"- Largest / smallest train class: {n.idxmax()} ({n.max()}) / {n.idxmin()} ({n.min()}), imbalance ratio "
             f"{n.max() / max(n.min(), 1):.1f}.",
             f"- {skipped} unreadable images skipped; every split's report, with each skipped file and why, is in "
             f"`{report_file}`."]
    if oracle is not None:
        lines.append(f"- AU-oracle ceiling: **{100 * oracle['test_accuracy']:.2f} %** test accuracy (chance "
                     f"{100 / len(train.classes):.2f} %).")
    return "\n".join(lines)


def run_names(runs: pd.DataFrame, mask) -> str:
    return ", ".join(f"{v}-s{s}" for v, s in runs.loc[mask, ["variant", "seed"]].itertuples(index=False))


def convergence(runs: pd.DataFrame, split: str = "val") -> str:
    """How a set of runs (``ablation.read_run`` rows) ended, as one markdown bullet: how many patience stopped
    before their limit, how many converged (their ``split`` accuracy flat over their last epochs, within one
    standard error), and by name the runs still improving at their limit and the others that did not converge."""
    n, early = len(runs), int(runs["stopped_early"].sum())
    rising = runs["still_improving_at_limit"].astype(bool)
    other = ~runs["converged"].astype(bool) & ~rising
    text = (f"- {int(runs['converged'].sum())} of {n} runs converged (their {split} accuracy flat over their last "
            f"epochs, within one standard error); {early} were stopped by patience before their epoch limit, "
            f"{n - early} reached it.")
    if rising.any():
        text += (f" **Still improving at their limit** ({int(rising.sum())}: {run_names(runs, rising)}): they chose "
                 f"their last or second-to-last epoch, so their numbers understate what the recipe reaches and the "
                 f"comparisons that use them are not conclusions.")
    if other.any():
        text += (f" **Not converged** ({int(other.sum())}: {run_names(runs, other)}): still rising over their last "
                 f"epochs; their numbers are not results.")
    stale = runs["other_code"].astype(bool) if "other_code" in runs else pd.Series(False, index=runs.index)
    if stale.any():
        text += (f" **Trained by other code** ({int(stale.sum())}: {run_names(runs, stale)}), reused as asked "
                 f"(reuse_stale): their numbers are not those of this code.")
    return text


def ended(summary: dict) -> str:
    """How one run ended, in words, from its ``summary.json``."""
    s = summary
    if s["stopped_early"]:
        return f"was stopped by patience at epoch {s['stopped_epoch']} of {s['max_epochs']}"
    if s["still_improving_at_limit"]:
        return (f"reached its limit of {s['max_epochs']} epochs **still improving** (it chose epoch "
                f"{s['chosen_epoch']}): its numbers understate what the recipe reaches")
    if not s["converged"]:
        return (f"reached its limit of {s['max_epochs']} epochs **without converging** (its {s['selection']} "
                f"accuracy still rising): its numbers are not a result")
    return (f"reached its limit of {s['max_epochs']} epochs, its {s['selection']} accuracy flat over its last epochs "
            f"(chose epoch {s['chosen_epoch']})")


def training(run: Run, metrics: pd.DataFrame, chance: float) -> str:
    """02: how the run ended and with which optimizer, the chosen and the last model's test accuracy against
    ``chance``, and how the loss and k moved (``metrics``: the run's ``metrics.csv``)."""
    s, best, last = run.summary, run.summary["best"], run.summary["last"]
    base = {"adam": "Adam", "adamw": "AdamW"}.get(run.config.optimizer, run.config.optimizer)
    optimizer = f"SAM (ρ = {run.config.rho}) over {base}" if run.config.sam else base
    first, final = metrics.iloc[0], metrics.iloc[-1]
    lines = [f"- One seed ({s['seed']}), optimised with {optimizer}: the run {ended(s)} ({s['train_seconds']:.0f} s "
             f"of training). The checkpoint chosen on {s['selection']} (epoch {best['epoch']}) has test accuracy "
             f"**{100 * best['test_accuracy']:.2f} %**; the last epoch {100 * last['test_accuracy']:.2f} %; chance is "
             f"{100 * chance:.1f} %. Notebook 04 has the multi-seed numbers.",
             f"- The mean loss went from {first['loss']:.3f} to {final['loss']:.3f}; train accuracy "
             f"{100 * final['train_accuracy']:.1f} % in the last epoch."]
    ks = [k for k in ("k1", "k2", "k3") if k in metrics]
    if ks:
        lines.append(f"- k = 1 + tanh θ moved from {', '.join(f'{first[k]:.3f}' for k in ks)} to "
                     f"{', '.join(f'{final[k]:.3f}' for k in ks)} (scales 1 to {len(ks)}).")
    return "\n".join(lines)


def evaluation(checkpoint: str | Path, scores: Scores, calibrated: dict | None = None) -> str:
    """03: the checkpoint's scores on the split (beside the paper's accuracy on its datasets, when the model was
    trained there), how its classes were matched to the split's when they differ, its hardest class, its most
    frequent confusion (``train.evaluation.Scores``) and the ECE of its confidence on the split, before and after
    the temperature ``calibrated`` (a ``confidence.calibrate`` summary; None: not calibrated)."""
    test, metrics, mapping = scores.split, scores.metrics, scores.mapping
    own = scores.trained_on in (None, test.dataset)
    paper = PAPER_ACCURACY.get(test.dataset) if own else None
    lines = [f"- `{checkpoint}` on {test.dataset}/{test.split} ({metrics['n']} images): accuracy "
             f"**{100 * metrics['accuracy']:.2f} %**, mean class accuracy {100 * metrics['mean_class_accuracy']:.2f} "
             f"%, macro-F1 {100 * metrics['macro_f1']:.2f} %"
             + (f" (the paper reports {paper:.2f} % accuracy)." if paper is not None else ".")]
    if not own:
        lines.append(f"- A cross-dataset score: the model was trained on {scores.trained_on}.")
    if not mapping.identity:
        dropped = ", ".join(f"{name} ({n} images)" for name, n in scores.dropped.items())
        lines.append(f"- Classes matched by name: scored on the {len(mapping.shared)} the model shares with the split "
                     f"({', '.join(mapping.shared)})"
                     + (f"; dropped, as the model lacks them: {dropped}" if dropped else "")
                     + (f"; the model's {', '.join(mapping.model_only)} never predicted, as the split lacks them"
                        if mapping.model_only else "") + ".")
    recall = pd.DataFrame(metrics["per_class"]).T["recall"]
    confusion = np.array(metrics["confusion"], dtype=float)
    np.fill_diagonal(confusion, 0)
    true, predicted = np.unravel_index(confusion.argmax(), confusion.shape)
    mistake = (f"most frequent confusion: {test.classes[true]} → {test.classes[predicted]} "
               f"({int(confusion[true, predicted])} images)" if confusion.any() else "no image was misclassified")
    lines.append(f"- Hardest class: {recall.idxmin()} (recall {100 * recall.min():.1f} %); {mistake}.")
    before = 100 * expected_calibration_error(scores.probabilities, test.labels)
    if calibrated is None:
        lines.append(f"- Confidence: ECE {before:.1f} % on these images, not calibrated (an official checkpoint is "
                     "the authors' file, not ours to write a temperature into).")
    else:
        t = calibrated["temperature"]
        after = 100 * expected_calibration_error(scaled(scores.probabilities, t), test.labels)
        lines.append(f"- Confidence: the temperature T = {t:.2f}, fitted on {calibrated['fit_split']} "
                     f"({calibrated['images']} images) and now stored in the checkpoint, takes the ECE on these "
                     f"images from {before:.1f} % to {after:.1f} % (the deployment goal is at most "
                     f"{100 * ECE_GOAL:.0f} %: {'met' if after <= 100 * ECE_GOAL else 'not met'}); "
                     + ("T > 1: the model was over-confident." if t > 1 else "T < 1: the model was under-confident."))
    return "\n".join(lines)


def embeddings(scores: pd.DataFrame, compared: pd.DataFrame, images: int, selection: str) -> str:
    """05: per variant, the silhouette and the k-NN accuracy as mean ± std over seeds (``scores``: one row per
    variant and seed), and QCS against each baseline paired over seeds (``embedding.comparisons``, one family
    under Holm's correction)."""
    summary = score_summary(scores)
    seeds = sorted(scores["seed"].unique())
    lines = [f"- Each seed's runs ({', '.join(map(str, seeds))}; checkpoints chosen on the **{selection}** split) embed "
             f"{images} test images drawn with the seed; the {int(scores['k'].iloc[0])}-NN vote is among {images} train "
             f"images (the train split, not the test images themselves).",
             "- Mean ± std over seeds: " + "; ".join(f"{v} silhouette {r['silhouette']}, k-NN accuracy "
                                                    f"{r['k-NN accuracy %']} %" for v, r in summary.iterrows()) + "."]
    if len(compared):
        family = family_sentence(compared.to_dict("records"), "QCS against the baselines, paired over seeds")
        lines.append(f"- {family}.")
        lines += [f"  - *{row.question}* {row.verdict}." for row in compared.itertuples()]
    return "\n".join(lines)


def localisation(table: pd.DataFrame | None, side: int, compared: list[dict] | None = None) -> str:
    """06: the share of CAM energy inside the action-unit masks, QCS against the baselines and an even spread
    (``cam.localisation`` of the first seed; None off SynthFER); whether a map of ``side × side`` tokens
    (``cam.grid_side``) can localise the masks at all (``cam.resolves``); and QCS − each baseline paired over seeds
    (``cam.compare_localisation``, one Holm family)."""
    cell = 100 / side ** 2
    grid = (f"- The maps are made of a {side} × {side} token grid per scale: one cell covers {cell:.1f} % of the "
            f"image.")
    if table is None:
        return grid + "\n- The CAMs and CSA maps are shown above; the localisation score needs SynthFER's masks."
    even = table.loc["even spread"]
    models = table.drop(index="even spread")
    lines = [grid + f" The action-unit masks cover {even['mean %']:.1f} % of it on average."]
    if not resolves(side, even["mean %"] / 100):
        lines[0] += (" A cell as large as the masks cannot single them out from the face around them: at this "
                     "resolution the maps **cannot localise**, and the energy shares below are **not informative** "
                     "about where the models look (a larger `backbone_size` gives a finer grid: the paper's 112 gives "
                     "7 × 7; the parameter `map_overrides` trains the runs 05 and 06 study at another resolution).")
    zero = "; ".join(f"{int(r['zero maps'])} of {name}'s" for name, r in models.iterrows() if r["zero maps"])
    zero = f" (left out: the images where a map was zero everywhere: {zero})" if zero else ""
    shares = ", ".join(f"{name} {r['mean %']:.1f} ± {r['std %']:.1f} %" for name, r in models.iterrows())
    lines.append(f"- Share of CAM energy inside the AU masks, first seed, mean ± std over {int(even['images'])} test "
                 f"images{zero}: {shares}; a map spread evenly would put {even['mean %']:.1f} % there (the masks' "
                 f"mean area).")
    if compared:
        family = family_sentence(compared, "QCS against the baselines over seeds (mean share per seed, in points)")
        lines.append(f"- {family}.")
        lines += [f"  - {verdict(c)}." for c in compared]
    return "\n".join(lines)


def predictions(checkpoint: str | Path, template: str, photos) -> str:
    """07: what ``faces.predict_photos`` read and found, each face's label and probability, and a warning when
    a SynthFER model reads real photos."""
    lines = [f"- `{checkpoint}` (crop template `{template}`) read {len(photos.files)} image(s) and found "
             f"{len(photos.faces)} face(s); {len(photos.failures)} file(s) gave no prediction."]
    lines += [f"- {Path(r['file']).name}, face {r['face']}: **{r['label']}** ({r['probabilities'][r['label']]:.2f})"
              for r in photos.faces]
    if template == "synthfer":
        lines.append("- This model was trained on SynthFER only: these labels are not expected to be right on real "
                     "faces.")
    return "\n".join(lines)


def _frame_rate(summaries: list[dict]) -> float:
    """Frames per second of ``predict_video`` over its summaries: frames / the seconds of all stages."""
    return sum(r["frames"] for r in summaries) / sum(sum(r["seconds"].values()) for r in summaries)


def smoother_words(chosen: dict) -> str:
    """A smoother of ``temporal.smoother_grid`` in words."""
    parts = ([f"the EMA with τ = {chosen['tau']:g} s"] if chosen["tau"] > 0 else []) + \
        ([f"hysteresis with a margin of {chosen['margin']:g}"] if chosen["margin"] > 0 else [])
    return " then ".join(parts) or "no smoothing"


def video(checkpoint: str | Path, template: str, chosen: dict, val_scores: pd.DataFrame, effect: pd.DataFrame,
          clean: pd.DataFrame, sweep: pd.DataFrame, results: list[dict], real: dict, every: int,
          nuisance: float) -> str:
    """09: what the checkpoint is (its run's selection split and whether it converged, when it is one of ours),
    which smoother the validation clips chose (``temporal.choose_smoother`` over ``val_scores``) and what it did on
    the held-out clips at the ``nuisance`` strength (``effect``) and without nuisances (``clean``: both
    ``temporal.smoother_effect``), the per-strength ``sweep`` (``temporal.nuisance_table``), the pipeline's speed
    over ``results``, and what the clip of real photos gave (faces found, frames without one, the labels' caveat
    for a SynthFER model: ``template``)."""
    summary_file = Path(checkpoint).with_name("summary.json")
    run = ""
    if summary_file.is_file():
        s = json.loads(summary_file.read_text())
        state = "converged" if s.get("converged") else "**not converged: the accuracies below are not a result**"
        run = f" (one run, seed {s['seed']}; chosen on the {s['selection']} split; {state})"
    settings = val_scores.groupby(["tau", "margin"]).ngroups
    lines = [f"- `{checkpoint}`{run} read {val_scores['clip'].nunique()} validation and {int(effect['clips'].max())} "
             f"held-out SynthFER clips (other people in each), faces placed by the clips' truth and detected every "
             f"{every} frame(s); nuisances of real video (shake, motion blur, flicker, occlusions, JPEG) added at "
             f"strength {nuisance:g} unless said otherwise.",
             f"- Chosen on the validation clips by mean macro-F1 among {settings} settings: **{smoother_words(chosen)}**."]
    if chosen["tau"] == 0 and chosen["margin"] == 0:
        lines.append("- No smoother beat raw labels on the validation clips, so the held-out clips are read raw.")
    else:
        lines.append(f"- On the held-out clips at strength {nuisance:g} (the clip is the unit; one Holm family of "
                     f"4 metrics): accuracy {effect.loc['accuracy', 'chosen − none']}; macro-F1 "
                     f"{effect.loc['macro_f1', 'chosen − none']}; flicker {effect.loc['flicker', 'chosen − none']}; "
                     f"onset delay {effect.loc['delay_s', 'chosen − none']}.")
        lines.append(f"- Without nuisances: accuracy {clean.loc['accuracy', 'chosen − none']}.")
    lines.append(f"- Over nuisance strengths {', '.join(f'{x:g}' for x in sweep.index)}: raw accuracy "
                 + ", ".join(f"{a:.1f} %" for a in sweep["accuracy none (%)"]) + "; with the chosen smoother "
                 + ", ".join(f"{a:.1f} %" for a in sweep["accuracy chosen (%)"]) + " (means over the held-out clips).")
    lines += [f"- The pipeline ran at {_frame_rate(results):.1f} frames/s on the SynthFER clips (no detector) and "
              f"{_frame_rate([real]):.1f} frames/s on the real clip (MTCNN every {every} frame(s)), on this machine.",
              f"- The real video ({Path(real['video']).name}): {real['frames']} frames, MTCNN found "
              f"{len(real['face_ids'])} face id(s), {real['frames_without_face']} frame(s) had no face and have a row "
              f"saying so{'; decoding stopped early: ' + real['error'] if real['error'] else ''}."]
    if template == "synthfer":
        lines.append("- This model was trained on SynthFER only: its labels on the real faces are not expected to be "
                     "right; the real clip shows the pipeline (detection, tracking, no-face rows, speed) working.")
    return "\n".join(lines)


def _val_over_test(teacher: dict, runs: pd.DataFrame) -> str:
    """One line: val − test accuracy (points) of each student variant (mean over seeds) and of the teacher."""
    val, test = (runs.groupby("variant", sort=False)[f"best_{split}_accuracy"].mean() for split in ("val", "test"))
    gaps = 100 * (val - test)
    line = ("- Val − test accuracy of the chosen checkpoints (points, mean over seeds): "
            + ", ".join(f"{v} {g:+.1f}" for v, g in gaps.items()))
    if np.isnan(teacher["val_accuracy"]):
        return line + "."
    return line + f"; the teacher {100 * (teacher['val_accuracy'] - runs['teacher_test_accuracy'].iloc[0]):+.1f}."


def _bias_lines(bias: pd.DataFrame, compared: pd.DataFrame) -> list[str]:
    """The teacher's and the students' gaps on SynthFER's bias-aligned and -conflicting test images (``students.
    bias_check``), and their paired comparisons (``students.bias_comparisons``, one Holm family)."""
    gaps = bias.assign(gap=100 * (bias["aligned"] - bias["conflicting"])).groupby("variant", sort=False)["gap"]
    mean, std, n = gaps.mean(), gaps.std(ddof=1), gaps.size()
    parts = [f"{v} {mean[v]:+.1f}" + (f" ± {std[v]:.1f} ({n[v]} seeds)" if n[v] > 1 else " (one checkpoint)")
             for v in mean.index]
    first = bias.iloc[0]
    lines = [f"- Background hue, measured: on SynthFER's test split, accuracy on the {int(first['n_aligned'])} images "
             f"whose hue is their class's (as in train and val) minus that on the {int(first['n_conflicting'])} whose "
             f"hue is another class's, in points (mean ± std over seeds): {'; '.join(parts)}. The larger the gap, the "
             f"more a model leans on the hue.",
             f"- {family_sentence(compared.to_dict('records'), 'The gaps paired over the students’ seeds')} (the "
             f"teacher is held fixed)."]
    return lines + [f"  - *{row.question}* {row.verdict}." for row in compared.itertuples()]


def _calibration_line(calibrated: pd.DataFrame) -> str:
    """The test ECE (%) after temperature scaling of the teacher and the KD students (mean over seeds), against
    ``ECE_GOAL``, with the ECE before it."""
    parts = []
    for variant, name in (("teacher", "the teacher"), ("kd", "the KD students")):
        rows = calibrated[calibrated["variant"] == variant]
        if rows.empty:  # a teacher given as an official checkpoint is not calibrated
            continue
        before, after = 100 * rows["test_ece_before"].mean(), 100 * rows["test_ece_after"].mean()
        seeds = "" if variant == "teacher" else f" (mean over {len(rows)} seeds)"
        parts.append(f"{name} {before:.1f} % → **{after:.1f} %**{seeds}, "
                     + ("within" if after <= 100 * ECE_GOAL else "above") + " the goal")
    return (f"- Confidence (temperature scaling fitted on each model's val split, stored in its checkpoint; "
            f"the goal is a test ECE of at most {100 * ECE_GOAL:.0f} %): test ECE " + "; ".join(parts) + ".")


def distillation(teacher: dict, runs: pd.DataFrame, compared: pd.DataFrame, int8: pd.DataFrame,
                 costs: pd.DataFrame, student: str, bias: pd.DataFrame | None = None,
                 bias_compared: pd.DataFrame | None = None, calibrated: pd.DataFrame | None = None) -> str:
    """10: which teacher (chosen how), whether the students converged, how far each model's val accuracy is
    above its test accuracy, on SynthFER with a spurious attribute how much each model leans on the background
    hue (``bias``: ``students.bias_check``, and its paired comparisons ``bias_compared``; None elsewhere), the
    paired verdicts of ``students.comparisons`` (KD against labels only, the feature term, the gap to the teacher
    and the goal of a student at most 3 points behind it), the int8 student's agreement and speed-up, and the
    latency ratios to the paper-size QCS; with ``calibrated`` (``students.calibrations``' table), the test ECE of
    the teacher and the KD students before and after temperature scaling, against the goal."""
    verdicts = dict(zip(compared["comparison"], compared["verdict"]))
    gap = compared.set_index("comparison").loc["kd − teacher"]
    if teacher["chosen_by"] == "val":
        who = (f"QCS seed {teacher['seed']}, the best on **val** of {teacher['candidates']} runs (val "
               f"{100 * teacher['val_accuracy']:.1f} %, test {100 * teacher['test_accuracy']:.1f} %)")
    else:
        who = f"the given checkpoint `{teacher['checkpoint']}` (test {100 * runs['teacher_test_accuracy'].iloc[0]:.1f} %)"
    lines = [f"- Teacher: {who}. Students: `{student}`, {len(runs)} runs ({runs['seed'].nunique()} seeds × "
             f"{runs['variant'].nunique()} losses), checkpoints chosen on the {runs['selection'].iloc[0]} split.",
             convergence(runs, runs["selection"].iloc[0]),
             _val_over_test(teacher, runs),
             f"- Does KD help? {verdicts['kd − labels']}.",
             f"- The feature term: {verdicts['kd_feature − kd']}.",
             f"- Against the teacher (one checkpoint; the interval is over the student's seeds): "
             f"{verdicts['kd − teacher']}. The goal, a student at most 3 points behind its teacher, is "
             + ("**met**" if gap["mean_diff"] >= -0.03 else f"**not met** ({100 * -gap['mean_diff']:.1f} points behind)")
             + " on the mean over seeds."]
    if bias is not None:
        lines += _bias_lines(bias, bias_compared)
    if calibrated is not None:
        lines.append(_calibration_line(calibrated))
    int8_row = costs.loc[[n for n in costs.index if " int8 " in n][0]]
    fp32_row = costs.loc[[n for n in costs.index if n.endswith("· kd · fp32")][0]]
    lines.append(f"- int8 ({int8['mode'].iloc[0]}): the KD students agreed with their fp32 selves on "
                 f"{100 * int8['top1_agreement'].mean():.1f} % of the test images (mean over {len(int8)} seeds), "
                 f"accuracy {int8['accuracy_delta'].mean():+.2f} points; {int8_row['p50 ms']:.2f} ms against "
                 f"{fp32_row['p50 ms']:.2f} ms for fp32 in ONNX Runtime ({fp32_row['p50 ms'] / int8_row['p50 ms']:.1f}×).")
    paper = costs.loc["paper-size QCS (untrained)", "p50 ms"]
    wide = costs.loc[[n for n in costs.index if n.endswith("at 224 px (untrained)")][0]]
    lines.append(f"- Latency at batch 1 on one thread of this CPU, one run of {costs['p50 ms'].size} models: the "
                 f"paper-size QCS takes {paper:.1f} ms at 224 px. The int8 student takes {int8_row['p50 ms']:.2f} ms "
                 f"at {int(int8_row['input px'])} px ({paper / int8_row['p50 ms']:.0f}× faster, but on a smaller input); at "
                 f"the same 224 px the student's network takes {wide['p50 ms']:.1f} ms in fp32 "
                 f"({paper / wide['p50 ms']:.1f}× faster). `benchmarks/student_speed.py` measures int8 at 224 px.")
    return "\n".join(lines)
