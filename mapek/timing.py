"""Timing: is holding a task's work until a daily window worth the wait?

Theory of operation
-------------------
The question is counterfactual. Work dispatched at 2pm may be answered faster than
work dispatched at 9am, but holding the 9am item until 2pm costs five hours of
waiting; and night work that waits for the morning anyway gains nothing from being
held until the morning. So we never compare average response times by hour. We ask,
item by item: had this item been held until the window opened, would it have been
done sooner, wait included?

The response model is empirical and calendar-aware. An item's response (dispatch →
completion) depends on *when in the week* it was dispatched: a Friday-evening item
waits for Monday. Responses are pooled in 96 bins — local hour of day by day type
(Monday-Thursday, Friday, Saturday, Sunday) in the task's time zone — and the
counterfactual response of an item released at time r is drawn from the bin of r. Every
item gets one uniform number u (common random numbers): its response dispatched now
is the u-quantile of its own bin, held it is the wait plus the u-quantile of the
release bin. An item the window would not hold gets exactly zero saving, so noise
does not pile up over the items a policy leaves alone.

Candidates are daily windows (start hour and maximum wait, two hours long, weekdays).
Choosing the best of many candidates on the same data that measures it flatters it
(winner's curse), so the history is split by case: one half chooses the window, the
other half measures it. The measurement's uncertainty comes from a bootstrap over
that half (resampling items and rebuilding the pools), and the confidence is the
share of bootstrap replicates in which the saving exceeds a practical minimum (a
quarter hour, or 5 % of the mean response, whichever is larger). Below `min_sample`
closed items, or with too few responses in the window's bins, nothing is claimed.
Only a task's most recent `max_items` mature items are analysed: what people do now
decides what a window would save, and it bounds a cycle over years of history (a
simulated half year of 20,000 deals, 40,000 items of one task: 58 s a cycle before);
the twin replays the last `twin_arrivals` of them.

How much a policy would save is then estimated in the twin (mapek.twin): the real
engine and runtime replay the same arrivals under the current and the proposed
policy, with people answering from the fitted model and the same u per item.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from .monitor import utc_offset
from .policy import WEEKDAYS, Change, DispatchWindow, PolicyBook

HOUR = 3600.0
N_BINS = 96  # 24 hours x 4 day types
_DAY_TYPE = np.array([0, 0, 0, 0, 1, 2, 3])  # Monday..Sunday -> Mon-Thu, Fri, Sat, Sun


class TimingConfig(msgspec.Struct, frozen=True):
    min_sample: int = 200  # closed items below which nothing is claimed
    min_pool: int = 8  # responses needed in a release bin to trust it
    window_hours: int = 2
    max_waits: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0)
    bootstrap: int = 300
    max_items: int = 5000  # the most recent mature items of a task analysed
    twin_arrivals: int = 2000  # the most recent of them replayed in the twin
    min_saving_hours: float = 0.25
    min_saving_share: float = 0.05  # of the mean response
    report_confidence: float = 0.8  # below this nothing is shown (bench/README.md: calibration)
    seed: int = 0


class TaskHistory(msgspec.Struct):
    """One task's closed, mature work items as arrays (seconds since the epoch)."""

    workflow_id: str
    task: str
    time_zone: str
    case_ids: list[str]
    enabled: np.ndarray
    dispatched: np.ndarray
    completed: np.ndarray

    @classmethod
    def from_items(cls, workflow_id: str, task: str, time_zone: str,
                   items: Sequence[tuple[str, float, float, float | None]], now: float,
                   max_items: int | None = None) -> TaskHistory:
        """`items`: (case_id, enabled_at, dispatched_at, closed_at or None if open).

        Items enabled so recently that slow ones could not have finished yet are left
        out (right censoring would otherwise make recent work look fast): the cut is
        the 95th percentile of the closed responses before `now`. Of the rest, the
        `max_items` enabled last are kept (all without a limit), in order of enabling.
        """
        closed = [r for r in items if r[3] is not None]
        if closed:
            resp = np.fromiter((r[3] - r[2] for r in closed), float, len(closed))
            horizon = float(np.quantile(resp, 0.95))
        else:
            horizon = 0.0
        cut = now - horizon
        kept = sorted((r for r in closed if r[1] <= cut), key=lambda r: r[1])
        if max_items is not None:
            kept = kept[-max_items:] if max_items > 0 else []
        return cls(workflow_id, task, time_zone, [r[0] for r in kept],
                   np.array([r[1] for r in kept], float),
                   np.array([r[2] for r in kept], float),
                   np.array([r[3] for r in kept], float))

    def __len__(self) -> int:
        return len(self.case_ids)


class TimingFinding(msgspec.Struct):
    workflow_id: str
    task: str
    window: DispatchWindow
    n: int  # closed, mature items analysed
    n_choose: int  # the half that chose the window
    n_measure: int  # the half that measured it
    baseline_hours: float  # mean enabled -> completed now (measuring half)
    saving_hours: float  # mean saving per item on the measuring half
    interval: tuple[float, float]  # 90 % bootstrap interval of that saving
    confidence: float  # P(saving > threshold) under the bootstrap
    threshold_hours: float
    held_share: float  # share of items the window would hold
    chosen_saving_hours: float  # what the choosing half saw (optimistic by design)
    window_median_hours: float  # median response when dispatched at the opening
    elsewhere_median_hours: float  # median response of items dispatched elsewhere


# ------------------------------------------------------------------- calendar
def local_week_hours(t: np.ndarray, time_zone: str) -> np.ndarray:
    """Hours since local Monday 00:00 (0..168) of each epoch time, DST exact: the UTC
    offset is looked up once per UTC hour (zones change offset on hour boundaries)."""
    hours = np.floor(t / HOUR).astype(np.int64)
    uniq, inv = np.unique(hours, return_inverse=True)
    off = np.fromiter((utc_offset(time_zone, h * HOUR) for h in uniq.tolist()), float,
                      len(uniq))
    local = t + off[inv]
    days = np.floor(local / 86400.0)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return weekday * 24.0 + (local - days * 86400.0) / HOUR


def week_bin(tow: np.ndarray, per_hour: int = 1) -> np.ndarray:
    weekday = (tow // 24).astype(np.int64) % 7
    return (_DAY_TYPE[weekday] * 24 * per_hour
            + ((tow % 24) * per_hour).astype(np.int64))


class ResponseModel:
    """Empirical response-time quantiles per calendar bin."""

    def __init__(self, bins: np.ndarray, responses: np.ndarray, per_hour: int = 1) -> None:
        order = np.lexsort((responses, bins))
        self.sorted = responses[order]
        self.count = np.bincount(bins, minlength=N_BINS * per_hour)
        self.start = np.concatenate(([0], np.cumsum(self.count)[:-1]))

    def quantile(self, bins: np.ndarray, u: np.ndarray) -> np.ndarray:
        n = self.count[bins]
        idx = self.start[bins] + np.minimum((u * n).astype(np.int64), np.maximum(n - 1, 0))
        out = self.sorted[np.minimum(idx, len(self.sorted) - 1)]
        return np.where(n > 0, out, np.nan)


def _openings(window: DispatchWindow) -> np.ndarray:
    return np.array([d * 24.0 + window.start_hour for d in window.weekdays])


def release_wait(tow: np.ndarray, window: DispatchWindow) -> np.ndarray:
    """Hours each item (enabled at local week-hour `tow`) would wait: 0 inside the
    window or when the next opening is further than the window's maximum wait."""
    wait = _wait_for_opening(tow, window)
    return np.where(wait > window.max_wait_hours, 0.0, wait)


def _wait_for_opening(tow: np.ndarray, window: DispatchWindow) -> np.ndarray:
    """Hours to the next opening of the window, whatever its maximum wait; 0 inside."""
    weekday = (tow // 24).astype(np.int64) % 7
    inside = np.isin(weekday, window.weekdays) & (
        ((tow % 24) - window.start_hour) % 24 < window.hours)
    gaps = (_openings(window)[None, :] - tow[:, None]) % 168.0
    return np.where(inside, 0.0, gaps.min(axis=1))


# --------------------------------------------------------------------- finding
DEFAULT = TimingConfig()


def find_window(history: TaskHistory, cfg: TimingConfig = DEFAULT) -> TimingFinding | None:
    """The best dispatch window for a task, measured honestly; None when the history
    is too small or no window beats dispatching at once."""
    n = len(history)
    if n < cfg.min_sample:
        return None
    tz = history.time_zone
    tow_enabled = local_week_hours(history.enabled, tz)
    tow_disp = local_week_hours(history.dispatched, tz)
    resp = (history.completed - history.dispatched) / HOUR
    # Split by case, stably: the same history always splits the same way.
    half = np.array([zlib.crc32(c.encode()) & 1 for c in history.case_ids], bool)
    choose, measure = ~half, half
    if choose.sum() < cfg.min_sample // 2 or measure.sum() < cfg.min_sample // 2:
        return None
    rng = np.random.default_rng(cfg.seed)
    u = rng.random(n)

    def model_of(mask: np.ndarray) -> ResponseModel:
        return ResponseModel(week_bin(tow_disp[mask]), resp[mask])

    choose_model = model_of(choose)
    m_tow, m_u = tow_enabled[measure], u[measure]
    m_bins, m_resp = week_bin(tow_disp[measure]), resp[measure]
    m_model = ResponseModel(m_bins, m_resp)
    best: tuple[float, DispatchWindow] | None = None
    # What the choosing half's items take dispatched at once: the same for every window.
    c_tow, c_u = tow_enabled[choose], u[choose]
    c_now = choose_model.quantile(week_bin(c_tow), c_u)
    # Monday-Thursday windows too: a month of history holds few Friday afternoons,
    # and a window is only proposed where its opening's responses were observed.
    # An item's saving is its response dispatched now minus (its wait + its response
    # at the release); an item the window does not hold saves exactly 0. Windows that
    # differ only in their maximum wait hold the same items at the same releases, those
    # a shorter wait holds among them: the wait to the opening and the response at the
    # release are computed once per opening, and each maximum wait keeps its items.
    for start, days in itertools.product(range(24), (WEEKDAYS, WEEKDAYS[:4])):
        opening = DispatchWindow(start, cfg.window_hours, tz, days)
        # Support is a matter of where work was dispatched, not of how it went: asking
        # it of the measuring half leaks nothing of that half's outcomes.
        if not (_window_supported(choose_model, opening, cfg.min_pool // 2)
                and _window_supported(m_model, opening, cfg.min_pool)):
            continue
        wait = _wait_for_opening(c_tow, opening)
        later = choose_model.quantile(week_bin((c_tow + wait) % 168.0), c_u)
        gain = c_now - (wait + later)
        for max_wait in cfg.max_waits:
            held = (wait > 0) & (wait <= max_wait)
            s = float(np.nanmean(np.where(held, gain, 0.0)))
            if best is None or s > best[0] + 1e-9:  # ties: the first (Monday-Friday) wins
                best = (s, msgspec.structs.replace(opening, max_wait_hours=max_wait))
    if best is None or best[0] <= 0:
        return None
    chosen_saving, window = best

    # The window is chosen: each measured item's wait and the calendar bins of its
    # dispatch now and at its release are fixed, only the pools the bootstrap resamples
    # change.
    m_wait = release_wait(m_tow, window)
    m_held = m_wait > 0
    now_bins, release_bins = week_bin(m_tow), week_bin((m_tow + m_wait) % 168.0)

    def saving(model: ResponseModel, idx: np.ndarray | slice) -> float:
        now = model.quantile(now_bins[idx], m_u[idx])
        later = model.quantile(release_bins[idx], m_u[idx])
        return float(np.nanmean(np.where(m_held[idx], now - (m_wait[idx] + later), 0.0)))

    point = saving(m_model, slice(None))
    baseline = float(np.mean((history.completed[measure] - history.enabled[measure]) / HOUR))
    threshold = max(cfg.min_saving_hours, cfg.min_saving_share * baseline)
    k = len(m_tow)
    boot = np.empty(cfg.bootstrap)
    for b in range(cfg.bootstrap):
        idx = rng.integers(0, k, k)
        boot[b] = saving(ResponseModel(m_bins[idx], m_resp[idx]), idx)
    boot = boot[~np.isnan(boot)]
    if len(boot) == 0:
        return None
    confidence = float(np.mean(boot > threshold))
    if point <= threshold or confidence < cfg.report_confidence:
        return None
    opening_bins = week_bin(_openings(window))
    in_window = np.isin(m_bins, opening_bins)
    return TimingFinding(
        history.workflow_id, history.task, window, n, int(choose.sum()), k, baseline,
        point, (float(np.quantile(boot, 0.05)), float(np.quantile(boot, 0.95))),
        confidence, threshold, float(np.mean(m_held)),
        chosen_saving,
        float(np.median(m_resp[in_window])) if in_window.any() else float("nan"),
        float(np.median(m_resp[~in_window])) if (~in_window).any() else float("nan"))


def _window_supported(model: ResponseModel, window: DispatchWindow, min_pool: int) -> bool:
    return bool(np.all(model.count[week_bin(_openings(window))] >= min_pool))


# ------------------------------------------------------------------------ twin
TwinRunner = Callable[..., Awaitable[Any]]  # mapek.twin.run_task_twin


class TwinEstimate(msgspec.Struct):
    current_hours: float  # mean enabled -> completed, dispatching at once
    proposed_hours: float  # the same arrivals under the window
    saving_hours: float
    arrivals: int


def fitted_responder(history: TaskHistory, seed: int = 0, min_pool: int = 8,
                     ) -> Callable[[int, float], float]:
    """A simulated person answering like the history: the u-quantile (u fixed per
    arrival index: common random numbers) of the response pool of the dispatch's bin.

    The twin resolves quarter or half hours where the history has enough responses: a held item
    is released right at the window's opening, and responses to work dispatched later
    in the same hour run into the evening more often (a pessimistic bias of up to a
    quarter of the saving, measured by bench/mapek_eval.py, at hour resolution)."""
    tow = local_week_hours(history.dispatched, history.time_zone)
    resp = (history.completed - history.dispatched) / HOUR
    models = [(k, ResponseModel(week_bin(tow, k), resp, k)) for k in (4, 2, 1)]
    rng = np.random.default_rng(seed + 1)
    u = rng.random(max(len(history), 1) * 4)
    tz = history.time_zone
    overall = float(np.median(resp)) if len(resp) else 0.0

    def respond(i: int, dispatched: float) -> float:
        t = local_week_hours(np.array([dispatched]), tz)
        ui = np.array([u[i % len(u)]])
        for k, model in models:  # the finest resolution with enough responses
            b = week_bin(t, k)
            if model.count[b[0]] >= min_pool or k == 1:
                h = model.quantile(b, ui)[0]
                break
        if np.isnan(h):  # an empty bin (nobody ever got work then): the overall median
            h = overall
        return float(h) * HOUR

    return respond


async def twin_saving(run_task_twin: TwinRunner, arrivals: Sequence[float],
                      respond: Callable[[int, float], float], window: DispatchWindow,
                      ) -> TwinEstimate:
    """Run the same arrivals through the twin under the current policy (none) and the
    proposed window, with the same responder: the difference is the policy's effect."""
    proposed = PolicyBook()
    proposed.apply(Change("dispatch_window", "twin", "Work", window=window), 0.0, "proposed")
    cur = await run_task_twin(arrivals, respond, dispatch=None)
    new = await run_task_twin(arrivals, respond, dispatch=proposed)
    c = float(np.mean(np.subtract(cur.completed_at, cur.enabled_at))) / HOUR
    p = float(np.mean(np.subtract(new.completed_at, new.enabled_at))) / HOUR
    return TwinEstimate(c, p, c - p, len(arrivals))
