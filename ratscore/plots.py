"""The timeline picture: Racine stage over time above the AU events as coloured bars; where the
animal was lost (track.csv's found = 0) as a grey band, and an unfamiliar video's reasons on top."""

from __future__ import annotations

import io
import textwrap

from .labels import LABELS, MAX_STAGE, NUM_CLASSES


def _time_unit(duration_s: float) -> tuple[float, str]:
    if duration_s > 2 * 3600:
        return 3600.0, "h"
    if duration_s > 3 * 60:
        return 60.0, "min"
    return 1.0, "s"


def timeline_png(scoring) -> bytes:
    """The picture of `scoring` as PNG bytes (Scoring.timeline_png keeps them)."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(scoring)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def timeline_figure(scoring):
    """The matplotlib figure of the picture (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, unit = _time_unit(scoring.duration_s)
    fig, (ax_stage, ax_au) = plt.subplots(
        2, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    cmap = plt.get_cmap("tab20")

    timeline = scoring.racine
    if len(timeline):
        xs = list(timeline.t_start_s / scale) + [timeline.t_end_s.iloc[-1] / scale]
        ys = list(timeline.racine_stage) + [timeline.racine_stage.iloc[-1]]
        ax_stage.step(xs, ys, where="post", color="firebrick", lw=1.6)
        ax_stage.fill_between(xs, ys, step="post", color="firebrick", alpha=0.15)
    ax_stage.set_ylim(-0.3, MAX_STAGE + 0.5)
    ax_stage.set_yticks(range(MAX_STAGE + 1))
    ax_stage.set_ylabel("Racine stage")
    ax_stage.grid(axis="y", alpha=0.3)
    n_ep = len(scoring.episodes)
    ax_stage.set_title(f"{scoring.video}: {len(scoring.events)} events, {n_ep} seizure episode"
                       f"{'' if n_ep == 1 else 's'}, max stage {scoring.summary['max_stage']}")
    for ep in scoring.episodes.itertuples(index=False):
        ax_stage.axvspan(ep.onset_s / scale, ep.offset_s / scale, color="gold", alpha=0.25, lw=0)
    track = getattr(scoring, "track", None)
    lost = track.lost() if track is not None else []
    for start, end in lost:
        for ax in (ax_stage, ax_au):
            ax.axvspan(start / scale, end / scale, color="0.5", alpha=0.3, lw=0, hatch="//")

    for ev in scoring.events.itertuples(index=False):
        ax_au.broken_barh([(ev.start_s / scale, max(ev.duration_s / scale, 1e-3))], (ev.au_id - 0.4, 0.8),
                          facecolors=cmap((2 * ev.au_id) % 20 + (ev.au_id >= 10)), alpha=0.35 + 0.65 * float(ev.score))
    ax_au.set_yticks(range(NUM_CLASSES))
    ax_au.set_yticklabels([f"{name} ({i})" for i, name in enumerate(LABELS)], fontsize=8)
    ax_au.set_ylim(NUM_CLASSES - 0.5, -0.5)
    ax_au.grid(axis="x", alpha=0.3)
    ax_au.set_xlim(0, scoring.duration_s / scale)
    ax_au.set_xlabel(f"time ({unit}); bar opacity = score; shaded = seizure episode"
                     + ("; grey hatched = animal lost (box held)" if lost else ""))
    trust = scoring.summary.get("trust") or {}
    if trust and not trust.get("familiar", True):
        reasons = "; ".join(trust.get("reasons") or []) or "see the summary"
        fig.suptitle(textwrap.fill(f"UNFAMILIAR: {reasons}", 125), color="firebrick", fontsize=10,
                     fontweight="bold", x=0.01, ha="left")
    fig.tight_layout()
    return fig
