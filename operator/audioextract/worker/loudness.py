"""Loudness normalisation decisions (docs/worker.md, "Loudness"); pure, no ffmpeg runs.

The method: measure the source (ebur128: integrated loudness, loudness range, true
peak), apply the one linear gain that moves the integrated loudness onto the target,
and only where that gain would push the true peak over its target, a true-peak
limiter (``alimiter`` at 4x oversampling). The encoded output is measured again; when
it is off the target by more than :data:`AIM_LU` (a lossy codec's low-pass lowers the
loudness, its ringing raises the peak) the gain and the limiter's ceiling are corrected
and the output encoded again, at most :data:`MAX_PASSES` times in all.

ffmpeg's loudnorm is not used: on sources whose loudness range exceeds its LRA target
it switches to dynamic mode, which misses the integrated target by up to 1.5 LU.
The loudness range is therefore never compressed; the ``lra`` target is reported
against, not enforced.
"""

import math
from dataclasses import dataclass

from audioextract.api.spec import Loudness
from audioextract.api.status import LoudnessResult

# EBU R128 / ITU-R BS.1770: integrated loudness needs at least one 400 ms block.
MIN_SECONDS = 0.4
ABSOLUTE_GATE_LUFS = -70.0
# The promise to the user (docs/worker.md) and the tighter aim that triggers a correction.
TOLERANCE_LU = 0.5
AIM_LU = 0.3
MAX_PASSES = 3
# Headroom a lossy codec's decoded output needs over the limiter's ceiling at first.
LOSSY_PEAK_MARGIN_DB = 0.5
# A correction aims this much under the true-peak target, so that it lands under it.
PEAK_STEP_DB = 0.1
OVERSAMPLE_RATE = 192000
# alimiter's smallest limit is 0.0625 (-24 dBFS).
LOWEST_CEILING_DB = -24.0

METHOD_LINEAR = "linear"
METHOD_LIMITER = "linear+limiter"
METHOD_NONE = "none"


@dataclass(frozen=True)
class Measurement:
    """EBU R128 figures from the ebur128 filter; -inf where the filter says so."""

    integrated: float
    threshold: float
    lra: float
    true_peak: float


@dataclass(frozen=True)
class GainPlan:
    """One linear gain, and the true-peak limiter's ceiling where one is needed."""

    gain_db: float
    ceiling_db: float | None = None

    @property
    def method(self) -> str:
        """``linear`` or ``linear+limiter``."""
        return METHOD_LINEAR if self.ceiling_db is None else METHOD_LIMITER


def unmeasurable(measured: Measurement | None, seconds: float | None) -> str | None:
    """Why no integrated loudness can be had for this audio; None when it can."""
    if seconds is not None and seconds < MIN_SECONDS:
        return (
            f"the audio is {seconds:.2f} s long; an integrated loudness measurement "
            f"(EBU R128) needs at least {MIN_SECONDS} s, so no gain was applied"
        )
    if measured is None:
        return "no loudness measurement could be made, so no gain was applied"
    if measured.true_peak == -math.inf:
        return "the audio is digital silence, so no gain was applied"
    if not math.isfinite(measured.integrated) or measured.integrated <= ABSOLUTE_GATE_LUFS:
        return (
            f"the audio stays below the {ABSOLUTE_GATE_LUFS:g} LUFS absolute gate "
            "(or is shorter than one 400 ms block), so no gain was applied"
        )
    return None


def plan_gain(targets: Loudness, measured: Measurement, *, lossy: bool) -> GainPlan:
    """The first pass: the gain onto the target, a limiter only if peaks would go over."""
    assert targets.integrated_lufs is not None and targets.true_peak_db is not None
    gain = targets.integrated_lufs - measured.integrated
    ceiling = targets.true_peak_db - (LOSSY_PEAK_MARGIN_DB if lossy else 0.0)
    if measured.true_peak + gain <= ceiling:
        return GainPlan(gain)
    return GainPlan(gain, max(ceiling, LOWEST_CEILING_DB))


def on_target(targets: Loudness, output: Measurement, tolerance: float = AIM_LU) -> bool:
    """Integrated loudness within ``tolerance`` and true peak at or under its target."""
    assert targets.integrated_lufs is not None and targets.true_peak_db is not None
    return (
        abs(output.integrated - targets.integrated_lufs) <= tolerance
        and output.true_peak <= targets.true_peak_db
    )


def correct(
    plan: GainPlan, targets: Loudness, measured: Measurement, output: Measurement
) -> GainPlan:
    """The next pass from what the last one produced: gain moved by the miss, ceiling lowered by the overshoot."""
    assert targets.integrated_lufs is not None and targets.true_peak_db is not None
    gain = plan.gain_db + (targets.integrated_lufs - output.integrated)
    over = output.true_peak - targets.true_peak_db
    ceiling = plan.ceiling_db
    if over > 0:
        base = (
            ceiling
            if ceiling is not None
            else min(targets.true_peak_db, measured.true_peak + plan.gain_db)
        )
        ceiling = base - over - PEAK_STEP_DB
    elif ceiling is None and measured.true_peak + gain > targets.true_peak_db:
        ceiling = targets.true_peak_db - PEAK_STEP_DB
    if ceiling is not None:
        ceiling = max(ceiling, LOWEST_CEILING_DB)
    return GainPlan(gain, ceiling)


def gain_filter(plan: GainPlan, sample_rate: int) -> str:
    """The filter chain: volume, and the oversampled limiter when there is a ceiling."""
    parts = [f"volume={plan.gain_db:.2f}dB"]
    if plan.ceiling_db is not None:
        limit = 10 ** (plan.ceiling_db / 20)
        parts += [
            # The limiter sees (nearly) the true peak at 4x 48 kHz, as ebur128 measures it.
            f"aresample={OVERSAMPLE_RATE}",
            f"alimiter=limit={limit:.5f}:attack=1:release=50:level=false:latency=true",
            f"aresample={sample_rate}",
        ]
    return ",".join(parts)


def _finite(value: float | None) -> float | None:
    return round(value, 2) if value is not None and math.isfinite(value) else None


def result(
    targets: Loudness,
    measured: Measurement | None,
    output: Measurement | None,
    plan: GainPlan | None,
    reason: str | None = None,
) -> LoudnessResult:
    """The result's ``loudness`` entry: input and output figures, method, and whether the target was met."""
    met = False
    if plan is not None and output is not None and reason is None:
        met = on_target(targets, output, TOLERANCE_LU)
        if not met:
            reason = (
                f"after {MAX_PASSES} passes the output measures "
                f"{output.integrated:.1f} LUFS / {output.true_peak:.1f} dBTP against a target "
                f"of {targets.integrated_lufs:g} LUFS / {targets.true_peak_db:g} dBTP: "
                "the limiter cannot reach it without distorting"
            )
    if (
        met
        and measured is not None
        and targets.lra is not None
        and measured.lra > targets.lra
        and reason is None
    ):
        reason = (
            f"the source's loudness range ({measured.lra:.1f} LU) exceeds the lra target "
            f"({targets.lra:g} LU); it is kept (linear gain never compresses dynamics)"
        )
    return LoudnessResult(
        method=plan.method if plan is not None else METHOD_NONE,
        target_met=met,
        reason=reason,
        gain_db=_finite(plan.gain_db) if plan is not None else None,
        input_integrated_lufs=_finite(measured.integrated) if measured else None,
        input_true_peak_db=_finite(measured.true_peak) if measured else None,
        input_lra=_finite(measured.lra) if measured else None,
        integrated_lufs=_finite(output.integrated) if output else None,
        true_peak_db=_finite(output.true_peak) if output else None,
    )
