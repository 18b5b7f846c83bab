"""The synthetic rat of `ratscore synth`: its behaviours, its chamber and how both are drawn.

A behaviour is a pure function of time that returns a pose vector (speed, head pitch, forelimb
lift, rearing, rolling onto the side, ...). A video's timeline cross-fades the poses of
neighbouring behaviours, so a boundary shows only as a change of motion. The renderer
integrates speed and turning into a path inside the chamber, builds a small 3-D skeleton,
projects it through an oblique camera and draws it with anti-aliased cv2 primitives, once
for the rat and once, mirrored about the nearest chamber wall and faded, for its reflection.

synth.py owns plans, config and files; this module owns only what a frame looks like.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional

import cv2
import numpy as np

TAU = 2.0 * math.pi

# ---------------------------------------------------------------------------------------------
# Pose vector. Lengths are in rat body lengths (nose to tail base), angles in radians.
FIELDS = (
    "speed",       # forward speed, body lengths / s
    "turn",        # turning rate, rad / s
    "wall",        # follow the chamber wall: sign = direction (+ counter-clockwise), size = weight
    "gait_amp",    # leg swing amplitude, 0..1 (also paddling while lying)
    "gait_freq",   # stride frequency, Hz
    "bend",        # lateral body curvature
    "twist",       # roll about the body axis (wet dog shakes)
    "head_yaw",
    "head_pitch",  # + = snout up
    "neck_ext",    # head pushed forward
    "jaw",         # mouth opening, 0..1
    "nose",        # snout tip offset (sniffing)
    "fl_l",        # left forelimb lift, 0 = on the floor, 1 = at the chin
    "fl_r",
    "fl_ext",      # forelimbs stretched rigidly forward, 0..1
    "hl_ext",      # hind limbs stretched rigidly backward, 0..1
    "rear",        # upright on the hind limbs, 0..1
    "roll",        # lying on the side, -1..1 (sign = side)
    "z",           # whole body lifted off the floor (jumps), body lengths
    "crouch",      # body lowered, 0..1
    "tail",        # tail curl
)
F = {name: i for i, name in enumerate(FIELDS)}
NF = len(FIELDS)


def _pose(**values) -> np.ndarray:
    p = np.zeros(NF)
    for k, v in values.items():
        p[F[k]] = v
    return p


def smoothstep(x: float) -> float:
    x = 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
    return x * x * (3.0 - 2.0 * x)


def _pulse(x: float) -> float:
    """A fast rise and slower decay peaking at 1 when x = 1 (a jerk, a twitch)."""
    return x * math.exp(1.0 - x) if x > 0.0 else 0.0


class Wobble:
    """A smooth random signal in about [-1, 1]: three sinusoids of random frequency and phase."""

    def __init__(self, rng: np.random.Generator, freq: float):
        self.f = [TAU * freq * x for x in rng.uniform(0.6, 1.6, 3)]
        self.ph = list(rng.uniform(0.0, TAU, 3))
        self.a = list(rng.dirichlet(np.ones(3)))

    def __call__(self, t: float) -> float:
        f, ph, a = self.f, self.ph, self.a
        return a[0] * math.sin(f[0] * t + ph[0]) + a[1] * math.sin(f[1] * t + ph[1]) + a[2] * math.sin(f[2] * t + ph[2])


class Motion:
    """One behaviour: pose(t) for local time t (defined for any t, also just outside [0, duration])."""

    def __init__(self, rng: np.random.Generator, duration: float, ctx: dict):
        self.duration = duration

    def pose(self, t: float) -> np.ndarray:
        raise NotImplementedError


class _Posture:
    """A random resting posture, shared by the still behaviours so stillness itself is no cue."""

    def __init__(self, rng):
        self.pitch = rng.uniform(-0.25, 0.25)
        self.yaw = rng.uniform(-0.4, 0.4)
        self.crouch = rng.uniform(0.0, 0.4)
        self.bend = rng.uniform(-0.2, 0.2)
        self.tail = rng.uniform(-0.6, 0.6)
        self.rear = rng.uniform(0.0, 0.15)

    def base(self, **extra) -> np.ndarray:
        p = _pose(head_pitch=self.pitch, head_yaw=self.yaw, crouch=self.crouch, bend=self.bend,
                  tail=self.tail, rear=self.rear)
        for k, v in extra.items():
            p[F[k]] += v
        return p


# ---- normal behaviour ("others"): a sequence of everyday activities --------------------------

class Sit(Motion):
    """Sitting: slow look-arounds and bursts of sniffing (the near-miss of staring)."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.posture = _Posture(rng)
        self.look_yaw, self.look_pitch = Wobble(rng, 0.3), Wobble(rng, 0.25)
        self.sniff_gate, self.sniff_f = Wobble(rng, 0.3), rng.uniform(5.0, 9.0)
        self.yaw_amp = rng.uniform(0.15, 0.45)

    def pose(self, t):
        sniff = max(0.0, self.sniff_gate(t)) * 0.012 * math.sin(TAU * self.sniff_f * t)
        return self.posture.base(head_yaw=self.yaw_amp * self.look_yaw(t), head_pitch=0.15 * self.look_pitch(t), nose=sniff)


class Explore(Motion):
    """Slow walking with stops, head scanning and sniffing."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.vmax = rng.uniform(0.3, 0.8)
        self.go, self.steer, self.yaw, self.pitch = (Wobble(rng, f) for f in (0.3, 0.3, 0.4, 0.3))
        self.sniff_f = rng.uniform(5.0, 9.0)

    def pose(self, t):
        speed = self.vmax * max(0.0, 0.3 + 0.7 * self.go(t))
        return _pose(speed=speed, turn=1.2 * self.steer(t), gait_amp=min(1.0, speed * 1.2), gait_freq=1.5 + 3.0 * speed,
                     head_yaw=0.5 * self.yaw(t), head_pitch=-0.15 + 0.2 * self.pitch(t),
                     nose=0.01 * math.sin(TAU * self.sniff_f * t), bend=0.15 * self.steer(t))


class Walk(Motion):
    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.v = rng.uniform(0.7, 1.6)
        self.steer, self.vary, self.yaw = Wobble(rng, 0.25), Wobble(rng, 0.4), Wobble(rng, 0.5)
        self.stride = rng.uniform(2.3, 3.2)

    def pose(self, t):
        speed = self.v * (1.0 + 0.2 * self.vary(t))
        return _pose(speed=speed, turn=0.9 * self.steer(t), gait_amp=0.8, gait_freq=self.stride * speed / self.v * 1.2,
                     head_yaw=0.25 * self.yaw(t), head_pitch=-0.1, bend=0.2 * self.steer(t))


class Groom(Motion):
    """Face washing (both paws at the face, small fast strokes) or flank grooming (bent body)."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.face = rng.random() < 0.65
        self.f = rng.uniform(3.5, 7.0)
        self.amp = rng.uniform(0.06, 0.18)
        self.lag = rng.uniform(0.0, math.pi)  # strokes range from in phase to alternating
        self.side = 1.0 if rng.random() < 0.5 else -1.0
        self.rear = rng.uniform(0.1, 0.35)
        self.bob = Wobble(rng, 0.5)

    def pose(self, t):
        s = TAU * self.f * t
        if self.face:
            return _pose(rear=self.rear, crouch=0.25, head_pitch=-0.35 + 0.08 * math.sin(s) + 0.05 * self.bob(t),
                         fl_l=0.8 + self.amp * math.sin(s), fl_r=0.8 + self.amp * math.sin(s + self.lag),
                         nose=0.008 * math.sin(2 * s))
        return _pose(crouch=0.3, bend=0.8 * self.side, head_yaw=1.0 * self.side, head_pitch=-0.3 + 0.06 * math.sin(s),
                     fl_l=0.3, fl_r=0.3, nose=0.01 * math.sin(s), tail=0.5 * self.side)


class ExploreRear(Motion):
    """Exploratory rearing: upright with still paws and a scanning head (not the seizure one)."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.height = rng.uniform(0.55, 0.9)
        self.rise = rng.uniform(0.4, 0.8)
        self.yaw, self.pitch = Wobble(rng, 0.4), Wobble(rng, 0.3)
        self.paws = rng.uniform(0.4, 0.7)

    def pose(self, t):
        up = smoothstep(t / self.rise) * (1.0 - smoothstep((t - self.duration + self.rise) / self.rise))
        return _pose(rear=self.height * up, fl_l=self.paws * up, fl_r=self.paws * up, head_yaw=0.6 * self.yaw(t),
                     head_pitch=0.2 + 0.2 * self.pitch(t), nose=0.01 * math.sin(TAU * 7.0 * t))


class TurnInPlace(Motion):
    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.rate = rng.uniform(1.2, 2.5) * (1 if rng.random() < 0.5 else -1)

    def pose(self, t):
        return _pose(speed=0.1, turn=self.rate, gait_amp=0.35, gait_freq=2.0, bend=0.35 * math.copysign(1, self.rate),
                     head_yaw=0.3 * math.copysign(1, self.rate))


class Sequence(Motion):
    """Motions one after another, each pair cross-faded over a short window centred on their boundary."""

    def __init__(self, starts, motions, fades):
        self.starts, self.motions, self.fades = list(starts), list(motions), list(fades)

    def index(self, t: float) -> int:
        return min(max(bisect_right(self.starts, t) - 1, 0), len(self.starts) - 1)

    def motion_at(self, t: float) -> Motion:
        """The motion playing at t, looked up through nested sequences (normal behaviour is one)."""
        i = self.index(t)
        m = self.motions[i]
        return m.motion_at(t - self.starts[i]) if isinstance(m, Sequence) else m

    def pose(self, t):
        i = self.index(t)
        p = self.motions[i].pose(t - self.starts[i])
        if i + 1 < len(self.starts):
            b, fade = self.starts[i + 1], self.fades[i]
            if t > b - fade / 2:
                w = smoothstep((t - b + fade / 2) / fade)
                p = (1 - w) * p + w * self.motions[i + 1].pose(t - b)
        if i > 0:
            b, fade = self.starts[i], self.fades[i - 1]
            if t < b + fade / 2:
                w = smoothstep((t - b + fade / 2) / fade)
                p = (1 - w) * self.motions[i - 1].pose(t - self.starts[i - 1]) + w * p
        return p


_EVERYDAY = ((Walk, 0.22), (Explore, 0.27), (Groom, 0.16), (Sit, 0.2), (ExploreRear, 0.08), (TurnInPlace, 0.07))


class Others(Sequence):
    """Normal behaviour: exploring, walking, grooming, sitting, the odd exploratory rearing."""

    def __init__(self, rng, duration, ctx):
        kinds = [k for k, _ in _EVERYDAY]
        weights = np.array([w for _, w in _EVERYDAY])
        starts, motions, t = [], [], -1.0
        while t < duration + 1.0:
            d = rng.uniform(1.0, 4.0)
            starts.append(t)
            motions.append(kinds[rng.choice(len(kinds), p=weights / weights.sum())](rng, d, ctx))
            t += d
        super().__init__(starts, motions, rng.uniform(0.4, 0.8, len(starts)))
        self.duration = duration


# ---- seizure action units ---------------------------------------------------------------------

class Staring(Motion):
    """Behavioural arrest: a frozen posture; only sub-pixel tremor."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.posture = _Posture(rng)
        self.pitch = rng.uniform(-0.05, 0.2)

    def pose(self, t):
        return self.posture.base(head_pitch=self.pitch + 0.002 * math.sin(TAU * 0.3 * t))


class MouthClonus(Motion):
    """Rhythmic jaw opening with a little head bob, the rest still."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.posture = _Posture(rng)
        self.f = rng.uniform(3.0, 6.0)
        self.amp = rng.uniform(0.55, 1.0)
        self.jitter, self.vary = Wobble(rng, 0.4), Wobble(rng, 0.3)
        self.bob = rng.uniform(0.015, 0.05)

    def pose(self, t):
        ph = TAU * self.f * t + 0.4 * self.jitter(t)
        a = self.amp * (0.8 + 0.2 * self.vary(t))
        return self.posture.base(jaw=a * 0.5 * (1 - math.cos(ph)), head_pitch=self.bob * math.sin(ph),
                                 nose=0.006 * math.sin(ph))


class WetDogShakes(Motion):
    """Bursts of fast whole-body twisting, head swinging most."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.posture = _Posture(rng)
        self.bouts, t = [], rng.uniform(0.0, 0.25)
        while t < duration:
            d = min(rng.uniform(0.4, 1.0), max(0.3, duration - t))
            self.bouts.append((t, d, rng.uniform(0.45, 0.85), rng.uniform(6.0, 11.0)))
            t += d + rng.uniform(0.3, 1.2)

    def pose(self, t):
        twist = 0.0
        for start, d, amp, f in self.bouts:
            if start - 0.1 < t < start + d + 0.1:
                env = math.sin(math.pi * min(max((t - start) / d, 0.0), 1.0)) ** 0.7
                twist += amp * env * math.sin(TAU * f * (t - start))
        return self.posture.base(twist=twist, head_yaw=1.2 * twist, bend=0.5 * twist, crouch=0.1)


class HeadNodding(Motion):
    """Continuous rhythmic up-down head motion."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.posture = _Posture(rng)
        self.f = rng.uniform(1.2, 3.0)
        self.amp = rng.uniform(0.12, 0.3)
        self.jitter = Wobble(rng, 0.3)

    def pose(self, t):
        s = math.sin(TAU * self.f * t + 0.5 * self.jitter(t))
        return self.posture.base(head_pitch=self.amp * s, neck_ext=0.01 * s, rear=0.03 * s)


class NeckJerk(Motion):
    """Sudden, large, brief flicks of the head at irregular intervals; still in between."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.posture = _Posture(rng)
        self.jerks, t = [], rng.uniform(0.05, 0.6)
        while t < duration + 0.5:
            self.jerks.append((t, rng.uniform(0.35, 0.7), rng.uniform(0.035, 0.06), rng.uniform(-0.25, 0.25)))
            t += rng.uniform(0.35, 1.6)

    def pose(self, t):
        pitch = yaw = ext = 0.0
        for tj, amp, tau, side in self.jerks:
            if tj < t < tj + 12 * tau:
                k = _pulse((t - tj) / tau)
                pitch += amp * k
                yaw += side * k
                ext += 0.04 * k
        return self.posture.base(head_pitch=pitch, head_yaw=yaw, neck_ext=ext, z=0.01 * min(pitch, 1.0), rear=0.06 * pitch)


class ForelimbClonus(Motion):
    """Forelimb jerking while sitting up: one limb, both in phase or both in antiphase."""

    pattern = "unilateral"

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.posture = _Posture(rng)
        self.f = rng.uniform(2.0, 5.0)
        self.amp = rng.uniform(0.25, 0.45)
        self.base = rng.uniform(0.3, 0.45)
        self.rear = rng.uniform(0.2, 0.4)
        self.side = 1 if rng.random() < 0.5 else -1
        self.jitter, self.vary = Wobble(rng, 0.5), Wobble(rng, 0.3)
        self.lag = rng.uniform(-0.2, 0.2)  # imperfect synchrony, never enough to blur the pattern

    def pose(self, t):
        th = TAU * self.f * t + 0.3 * self.jitter(t)
        a = self.amp * (0.8 + 0.2 * self.vary(t))
        one = self.base + a * (0.5 + 0.5 * math.sin(th))
        if self.pattern == "unilateral":
            active, rest = one, 0.05 + 0.01 * math.sin(th)
            left, right = (active, rest) if self.side > 0 else (rest, active)
        elif self.pattern == "bilateral":
            left, right = one, self.base + a * (0.5 + 0.5 * math.sin(th + self.lag))
        else:
            left, right = one, self.base + a * (0.5 + 0.5 * math.sin(th + math.pi + self.lag))
        bob = 0.03 * math.sin(th) if self.pattern == "bilateral" else 0.0
        return self.posture.base(rear=self.rear - self.posture.rear + bob, fl_l=left, fl_r=right,
                                 head_pitch=0.05 + 0.04 * math.sin(th))


class BilateralClonus(ForelimbClonus):
    pattern = "bilateral"


class AlternatingClonus(ForelimbClonus):
    pattern = "alternating"


class Rearing(Motion):
    """Seizure rearing: upright, swaying, forelimbs jerking; may drop and rise again."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.height = rng.uniform(0.8, 1.0)
        self.rise = rng.uniform(0.35, 0.8)
        self.f = rng.uniform(2.0, 4.0)
        self.amp = rng.uniform(0.2, 0.35)
        self.sway = Wobble(rng, 0.6)
        self.dips = []
        t = rng.uniform(2.0, 4.0)
        while t < duration - 1.0:
            self.dips.append((t, rng.uniform(0.6, 1.2)))
            t += rng.uniform(2.0, 4.0)

    def pose(self, t):
        up = smoothstep(t / self.rise)
        for start, d in self.dips:
            if start < t < start + d:
                up *= 1.0 - 0.7 * math.sin(math.pi * (t - start) / d)
        th = TAU * self.f * t
        fl = 0.6 + self.amp * (0.5 + 0.5 * math.sin(th))
        return _pose(rear=self.height * up, fl_l=fl, fl_r=0.6 + self.amp * (0.5 + 0.5 * math.sin(th + 0.3)),
                     head_pitch=0.3 + 0.08 * math.sin(th), twist=0.12 * self.sway(t), bend=0.1 * self.sway(t + 1.0))


class Falling(Motion):
    """Losing posture to the side, lying with paddling limbs, trying to right itself."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.side = ctx["side"]
        self.t0 = rng.uniform(0.05, 0.4)
        self.fall = rng.uniform(0.25, 0.5)
        self.rear0 = rng.uniform(0.2, 0.6)
        self.f = rng.uniform(2.0, 4.0)
        self.paddle = rng.uniform(0.5, 1.0)
        self.rights = []
        t = self.t0 + rng.uniform(2.0, 3.0)
        while t < duration - 1.2:
            self.rights.append((t, rng.uniform(0.8, 1.4)))
            t += rng.uniform(2.0, 3.5)
        self.head = Wobble(rng, 0.7)

    def pose(self, t):
        down = smoothstep((t - self.t0) / self.fall)
        for start, d in self.rights:
            if start < t < start + d:
                down *= 1.0 - 0.6 * math.sin(math.pi * (t - start) / d)
        lying = smoothstep((t - self.t0 - self.fall) / 0.3)
        return _pose(roll=self.side * down, rear=self.rear0 * (1.0 - smoothstep((t - self.t0) / 0.3)),
                     gait_amp=self.paddle * lying, gait_freq=self.f, head_pitch=0.2 * self.head(t),
                     fl_l=0.3 * lying, fl_r=0.3 * lying, tail=0.3 * self.side)


class WildRunning(Motion):
    """Fast circling along the wall, with sudden reversals."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.v = rng.uniform(2.5, 4.5)
        self.stride = rng.uniform(5.5, 8.0)
        self.dir0 = 1.0 if rng.random() < 0.5 else -1.0
        self.reversals, t = [], rng.uniform(1.2, 3.5)
        while t < duration:
            self.reversals.append(t)
            t += rng.uniform(1.5, 3.5)
        self.vary, self.roll = Wobble(rng, 0.8), Wobble(rng, 2.0)

    def pose(self, t):
        d, spin = self.dir0, 0.0
        for r in self.reversals:
            if t > r:
                d = -d
            if abs(t - r) < 0.15:
                spin = -d * 9.0 * math.cos(math.pi * (t - r) / 0.3)
        speed = self.v * (0.85 + 0.15 * self.vary(t))
        return _pose(speed=speed, wall=d, turn=spin, gait_amp=1.0, gait_freq=self.stride, bend=0.25 * d,
                     head_yaw=0.2 * d, twist=0.08 * self.roll(t), head_pitch=0.05)


class Jumping(Motion):
    """Repeated jumps (crouch, take-off, flight, landing) between short dashes."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.jumps, t = [], rng.uniform(0.1, 0.4)
        while t < duration:
            air = rng.uniform(0.25, 0.45)
            self.jumps.append((t, air, rng.uniform(0.3, 0.9), rng.uniform(0.8, 3.0), rng.uniform(-3.0, 3.0)))
            t += air + rng.uniform(0.3, 1.0)
        self.dash = rng.uniform(0.8, 1.8)

    def pose(self, t):
        z = rear = crouch = turn = ext = 0.0
        speed = self.dash
        for start, air, h, v, tr in self.jumps:
            if start - 0.15 < t < start:
                crouch = math.sin(math.pi * (t - start + 0.15) / 0.15)
            elif start <= t < start + air:
                x = (t - start) / air
                z = 4.0 * h * x * (1.0 - x)
                rear, speed, turn, ext = 0.45 * (1.0 - x), v, tr, 0.6
        return _pose(speed=speed, turn=turn, wall=0.5, z=z, rear=rear, crouch=0.8 * crouch, fl_ext=0.4 * ext,
                     hl_ext=ext, gait_amp=0.9 * (1.0 if z == 0 else 0.2), gait_freq=5.0, head_pitch=0.15)


class TonicExtension(Motion):
    """Rigid extension of all limbs, lying on the side (or flat), head thrown back."""

    def __init__(self, rng, duration, ctx):
        super().__init__(rng, duration, ctx)
        self.side = ctx["side"]
        self.on_side = rng.random() < 0.7
        self.onset = rng.uniform(0.2, 0.5)

    def pose(self, t):
        on = smoothstep(t / self.onset)
        tremor = 0.01 * math.sin(TAU * 11.0 * t)
        return _pose(roll=self.side * 0.95 * on if self.on_side else 0.0, crouch=0.0 if self.on_side else on,
                     fl_ext=on + tremor, hl_ext=on, head_pitch=0.4 * on, neck_ext=0.03 * on, tail=0.0)


MOTIONS: dict[int, type] = {
    0: Others, 1: Staring, 2: MouthClonus, 3: WetDogShakes, 4: HeadNodding, 5: NeckJerk,
    6: ForelimbClonus, 7: BilateralClonus, 8: AlternatingClonus, 9: Rearing, 10: Falling,
    11: WildRunning, 12: Jumping, 13: TonicExtension,
}


def build_timeline(segments, rng: np.random.Generator, fade_range: tuple[float, float]) -> Sequence:
    """The pose timeline of a video from its (start_s, end_s, au_id) segments."""
    ctx = {"side": 1.0 if rng.random() < 0.5 else -1.0}
    starts, motions, fades = [], [], []
    for i, (start, end, au) in enumerate(segments):
        starts.append(start)
        motions.append(MOTIONS[au](rng, end - start, ctx))
        if i + 1 < len(segments):
            nxt = segments[i + 1]
            # the fade never eats more than a third of either neighbour
            fades.append(min(rng.uniform(*fade_range), (end - start) / 3, (nxt[1] - nxt[0]) / 3))
    return Sequence(starts, motions, fades or [0.3])


# ---------------------------------------------------------------------------------------------
# The skeleton, in body coordinates (x forward, y left, z up; unit = body length).

_SPINE_X = np.array([-0.40, -0.30, -0.19, -0.08, 0.03, 0.13, 0.22])
_SPINE_R = np.array([0.10, 0.135, 0.15, 0.148, 0.138, 0.122, 0.10])
_BASE = np.zeros((37, 3))
_BASE[0:7, 0], _BASE[0:7, 2] = _SPINE_X, _SPINE_R * 0.95 + 0.01
_BASE[7] = (0.29, 0, 0.12)     # neck
_BASE[8] = (0.38, 0, 0.13)     # head
_BASE[9] = (0.46, 0, 0.115)    # snout
_BASE[10] = (0.53, 0, 0.10)    # snout tip
_BASE[11] = (0.565, 0, 0.095)  # nose
_BASE[12] = (0.47, 0, 0.075)   # lower jaw
_BASE[13], _BASE[14] = (0.35, 0.055, 0.19), (0.35, -0.055, 0.19)  # ears
_BASE[15], _BASE[16] = (0.43, 0.045, 0.15), (0.43, -0.045, 0.15)  # eyes
_BASE[17] = (0.36, 0, 0.21)    # head cap (dental cement)
_BASE[18] = (0.36, 0, 0.25)    # connector
_BASE[19] = (0.36, 0, 0.27)    # cable anchor
_BASE[20], _BASE[21] = (0.17, 0.07, 0.07), (0.17, -0.07, 0.07)    # shoulders
_BASE[24], _BASE[25] = (-0.28, 0.09, 0.07), (-0.28, -0.09, 0.07)  # hips
HEAD = slice(8, 20)
NECK_PIVOT = np.array([0.27, 0.0, 0.12])
HIP_PIVOT = np.array([-0.32, 0.0, 0.05])
TAIL_N = 9
TAIL_START = 28  # body point index of the tail's root; the tail's TAIL_N points follow it

# colour slots
FUR, PINK, EYE, CAP, PLUG, MOUTH = range(6)

# primitives: (kind 0 circle / 1 line, point a, point b, radius or thickness, colour)
_PRIMS = [(0, i, i, r, FUR) for i, r in enumerate(_SPINE_R)] + [
    (0, 7, 7, 0.085, FUR), (0, 8, 8, 0.078, FUR), (0, 9, 9, 0.058, FUR), (0, 10, 10, 0.035, FUR),
    (0, 11, 11, 0.016, PINK), (0, 12, 12, 0.03, MOUTH), (0, 13, 13, 0.032, PINK), (0, 14, 14, 0.032, PINK),
    (0, 15, 15, 0.013, EYE), (0, 16, 16, 0.013, EYE),
    (1, 20, 22, 0.045, FUR), (1, 21, 23, 0.045, FUR), (0, 22, 22, 0.022, PINK), (0, 23, 23, 0.022, PINK),
    (1, 24, 26, 0.055, FUR), (1, 25, 27, 0.055, FUR), (0, 26, 26, 0.025, PINK), (0, 27, 27, 0.025, PINK),
] + [(1, TAIL_START + i, TAIL_START + 1 + i, 0.035 - 0.0025 * i, PINK) for i in range(TAIL_N - 1)]
_CAP_PRIMS = [(0, 17, 17, 0.055, CAP), (0, 18, 18, 0.03, PLUG)]


def _without_tail(prims: np.ndarray) -> np.ndarray:
    """The primitives a label box bounds. The tail is drawn, but left out of the boxes, as the cable
    is: a line 1-2 px wide that the camera often cannot resolve (pink on a grey floor turns to the
    floor's grey in monochrome video), 0.85 body lengths long, so that a box that held it was
    stretched by a part no detector can see, and a crop around it made the body small."""
    is_tail = (prims[:, 0] == 1) & (prims[:, 1] >= TAIL_START)
    return prims[~is_tail]


def _rot_z(p, a, pivot):
    c, s = np.cos(a), np.sin(a)
    x, y = p[..., 0] - pivot[0], p[..., 1] - pivot[1]
    p[..., 0], p[..., 1] = pivot[0] + c * x - s * y, pivot[1] + s * x + c * y


def _rot_y(p, a, pivot):
    """Pitch: positive raises points ahead of the pivot."""
    c, s = np.cos(a), np.sin(a)
    x, z = p[..., 0] - pivot[0], p[..., 2] - pivot[2]
    p[..., 0], p[..., 2] = pivot[0] + c * x - s * z, pivot[2] + s * x + c * z


def _rot_x(p, a, pivot):
    c, s = np.cos(a), np.sin(a)
    y, z = p[..., 1] - pivot[1], p[..., 2] - pivot[2]
    p[..., 1], p[..., 2] = pivot[1] + c * y - s * z, pivot[2] + s * y + c * z


def body_points(p: np.ndarray, gait_phase: float) -> np.ndarray:
    """(37, 3) skeleton points in body coordinates for pose p."""
    pts = _BASE.copy()
    # head: opened jaw, sniffing nose, then pitch / yaw about the neck
    pts[12, 2] -= 0.05 * p[F["jaw"]]
    pts[12, 0] -= 0.01 * p[F["jaw"]]
    pts[10:12, 0] += p[F["nose"]]
    pts[HEAD, 0] += p[F["neck_ext"]]
    _rot_y(pts[HEAD], p[F["head_pitch"]], NECK_PIVOT)
    _rot_z(pts[HEAD], p[F["head_yaw"]], NECK_PIVOT)
    # limbs: gait swing, lift toward the chin, rigid extension
    amp = p[F["gait_amp"]]
    for k, (side, lift) in enumerate(((1, p[F["fl_l"]]), (-1, p[F["fl_r"]]))):
        ph = gait_phase + (0.0 if side > 0 else math.pi)
        paw = np.array([0.22 + 0.07 * amp * math.sin(ph), 0.075 * side, 0.015 + 0.03 * amp * max(0.0, math.cos(ph))])
        paw += lift * (np.array([0.30, 0.045 * side, 0.17]) - paw)
        paw += p[F["fl_ext"]] * (np.array([0.48, 0.14 * side, 0.03]) - paw)
        pts[22 + k] = paw
        ph_h = ph + math.pi
        hind = np.array([-0.22 + 0.07 * amp * math.sin(ph_h), 0.10 * side, 0.015 + 0.03 * amp * max(0.0, math.cos(ph_h))])
        hind += p[F["hl_ext"]] * (np.array([-0.62, 0.10 * side, 0.03]) - hind)
        pts[26 + k] = hind
    # tail: from its base backwards, curling, following the body's bend
    curl = p[F["tail"]] + 0.3 * math.sin(gait_phase * 0.5) * amp - 0.8 * p[F["bend"]]
    ang = math.pi + np.cumsum(np.full(TAIL_N, curl / TAIL_N))
    seg = 0.85 / (TAIL_N - 1)
    tail = slice(TAIL_START + 1, TAIL_START + TAIL_N)
    pts[TAIL_START, :] = (-0.43, 0.0, 0.05)
    pts[tail, 0] = -0.43 + np.cumsum(seg * np.cos(ang[1:]))
    pts[tail, 1] = np.cumsum(seg * np.sin(ang[1:]))
    pts[tail, 2] = 0.015
    # body: lateral bend (front and back in opposite senses), twist about the long axis
    body = slice(0, TAIL_START)
    x = pts[body, 0]
    a = p[F["bend"]] * np.clip(x / 0.35, -1.0, 1.0)
    c, s = np.cos(a), np.sin(a)
    pts[body, 0], pts[body, 1] = c * x - s * pts[body, 1], s * x + c * pts[body, 1]
    tw = p[F["twist"]]
    if tw:
        tw_a = tw * np.clip(0.5 + x, 0.2, 1.5)
        c, s = np.cos(tw_a), np.sin(tw_a)
        y, z = pts[body, 1], pts[body, 2] - 0.12
        pts[body, 1], pts[body, 2] = c * y - s * z, 0.12 + s * y + c * z
    # crouch lowers the body, rearing pitches everything but the hind paws and tail up about the hips
    pts[:26, 2] -= 0.04 * p[F["crouch"]] * (pts[:26, 2] > 0.03)
    _rot_y(pts[:26], 1.25 * p[F["rear"]], HIP_PIVOT)
    # lying on the side: roll about the floor line under the flank
    roll = p[F["roll"]]
    if roll:
        side = math.copysign(1.0, roll)
        _rot_x(pts, side * abs(roll) * math.pi / 2, np.array([0.0, side * 0.1, 0.0]))
    pts[:, 2] = np.maximum(pts[:, 2], 0.005) + p[F["z"]]
    return pts


# ---------------------------------------------------------------------------------------------
# The scene: camera, chamber, colours, lighting.

_BEDDINGS = ((205, 175, 125), (185, 145, 95), (228, 224, 214), (160, 125, 85), (215, 200, 160))


@dataclass
class Scene:
    width: int
    height: int
    gray: bool
    sin_el: float       # camera elevation (90 degrees = straight down)
    cos_el: float
    cam_dist: float     # camera distance in chamber radii (perspective)
    scale: float        # pixels per chamber radius at the chamber's centre
    cx: float
    cy: float
    wall_h: float       # wall height, chamber radii
    rat_len: float      # body length, chamber radii
    colours: np.ndarray  # (6, 3) base colours of the colour slots (RGB)
    cable_colour: tuple
    cable_px: float
    cap: bool
    reflection: float   # reflection opacity at the wall
    shadow: float
    blur: float
    noise: float
    flicker: float
    flicker_hz: float
    flicker_phase: float
    bg: np.ndarray = None         # (H, W, 3) uint8, with the front wall overlay
    bg_plain: np.ndarray = None   # (H, W, 3) uint8, without it
    overlay: np.ndarray = None    # (H, W, 3) float32 front wall (rim, glints) drawn over the rat
    overlay_a: np.ndarray = None  # (H, W) float32
    band: np.ndarray = None       # (H, W) float32 where the wall shows reflections, and how much
    band_box: tuple = (0, 0, 0, 0)
    illum: np.ndarray = None      # (H, W) float32 light falling on each pixel
    noise_bank: list = None

    def project(self, pts: np.ndarray):
        """World points (N, 3) in chamber radii (x right, y away, z up) -> u, v, px per unit, depth."""
        depth = pts[:, 1] * self.cos_el - pts[:, 2] * self.sin_el
        k = self.scale * self.cam_dist / (self.cam_dist + depth)
        u = self.cx + k * pts[:, 0]
        v = self.cy - k * (pts[:, 1] * self.sin_el + pts[:, 2] * self.cos_el)
        return u, v, k, depth


def _uniform(rng, r):
    return float(rng.uniform(r[0], r[1]))


def make_scene(rng: np.random.Generator, config) -> Scene:
    """Draw one video's look from the config's ranges, and paint its static background."""
    w, h = config.resolutions[rng.integers(len(config.resolutions))]
    elev = 90.0 if config.view == "topdown" else _uniform(rng, config.camera_elevation_deg)
    mouse = config.animal == "mouse"
    fur = rng.uniform(50, 85, 3) if mouse else np.array([rng.uniform(225, 250), rng.uniform(215, 240), rng.uniform(198, 228)])
    pink = np.array([rng.uniform(200, 235), rng.uniform(140, 175), rng.uniform(140, 170)])
    if mouse:
        pink = pink * 0.6
    eye = (20, 15, 15) if mouse else (rng.uniform(110, 160), 25, 35)
    cap = rng.choice([[225, 225, 218], [205, 200, 195], [230, 190, 185], [120, 170, 120]]) * rng.uniform(0.9, 1.05)
    plug = rng.choice([[30, 30, 32], [60, 60, 60], [40, 80, 40]])
    mouth = pink * 0.55
    colours = np.array([fur, pink, eye, cap, plug, mouth], dtype=float)
    scene = Scene(
        width=int(w), height=int(h), gray=bool(rng.random() < config.grayscale_fraction),
        sin_el=math.sin(math.radians(elev)), cos_el=math.cos(math.radians(elev)),
        cam_dist=rng.uniform(3.5, 6.0), scale=1.0, cx=0.0, cy=0.0, wall_h=rng.uniform(0.7, 1.1),
        rat_len=_uniform(rng, config.rat_length) * (0.6 if mouse else 1.0), colours=colours,
        cable_colour=tuple(float(c) for c in rng.choice([[25, 25, 25], [50, 50, 60], [200, 200, 200], [40, 60, 120]])),
        cable_px=rng.uniform(1.2, 2.6), cap=not mouse, reflection=_uniform(rng, config.reflection_strength),
        shadow=rng.uniform(0.12, 0.3), blur=_uniform(rng, config.blur_sigma), noise=_uniform(rng, config.noise_sigma),
        flicker=_uniform(rng, config.flicker), flicker_hz=rng.uniform(0.05, 0.6), flicker_phase=rng.uniform(0, TAU),
    )
    _fit_chamber(scene, rng, _uniform(rng, config.chamber_fill))
    _paint_background(scene, rng, _uniform(rng, config.brightness))
    return scene


def _circle(z: float, n: int = 72) -> np.ndarray:
    a = np.linspace(0.0, TAU, n, endpoint=False)
    return np.stack([np.cos(a), np.sin(a), np.full(n, z)], axis=1)


def _fit_chamber(scene: Scene, rng, fill: float) -> None:
    ring = np.concatenate([_circle(0.0), _circle(scene.wall_h)])
    u, v, _, _ = scene.project(ring)
    span_u, span_v = u.max() - u.min(), v.max() - v.min()
    s = min(fill * scene.width / span_u, 0.94 * scene.height / span_v)
    scene.scale = s
    free_u, free_v = scene.width - s * span_u, scene.height - s * span_v
    scene.cx = -s * u.min() + free_u * rng.uniform(0.3, 0.7)
    scene.cy = -s * v.min() + free_v * rng.uniform(0.3, 0.7)


def _poly(scene, pts) -> np.ndarray:
    u, v, _, _ = scene.project(pts)
    return np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)


def _paint_background(scene: Scene, rng, brightness: float) -> None:
    w, h = scene.width, scene.height
    top, bottom = rng.uniform(60, 200, 3), rng.uniform(60, 200, 3)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = (top * (1 - ramp) + bottom * ramp).astype(np.float32) * np.ones((1, w, 1), np.float32)
    for _ in range(rng.integers(0, 4)):  # lab clutter around the chamber
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + rng.uniform(10, w / 3)), int(y0 + rng.uniform(10, h / 3))),
                      tuple(float(c) for c in rng.uniform(40, 220, 3)), -1)
    floor = _poly(scene, _circle(0.0))
    rim = _poly(scene, _circle(scene.wall_h))
    bedding = np.array(_BEDDINGS[rng.integers(len(_BEDDINGS))], float) * rng.uniform(0.9, 1.08, 3)
    cv2.fillPoly(img, [floor], tuple(bedding), cv2.LINE_AA, 4)
    # bedding flakes, denser than the eye can count
    n = int(min(6000, 0.25 * (scene.scale ** 2)))
    r, a = np.sqrt(rng.random(n)) * 0.98, rng.uniform(0, TAU, n)
    u, v, k, _ = scene.project(np.stack([r * np.cos(a), r * np.sin(a), np.zeros(n)], axis=1))
    sizes = rng.uniform(0.006, 0.02, n) * k
    tints = bedding[None, :] * rng.uniform(0.72, 1.15, (n, 1))
    angles = rng.uniform(0, 180, n)
    for i in range(n):
        cv2.ellipse(img, (int(u[i] * 16), int(v[i] * 16)), (max(1, int(sizes[i] * 16)), max(1, int(sizes[i] * 8))),
                    float(angles[i]), 0, 360, tuple(tints[i]), -1, cv2.LINE_AA, 4)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    # the transparent wall: tint, rims, glints; the near half goes to an overlay drawn over the rat
    hull = cv2.convexHull(np.concatenate([floor, rim]))
    floor_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(floor_mask, [floor], 255, cv2.LINE_8, 4)
    hull_mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(hull_mask, [hull], 255, cv2.LINE_8, 4)
    wall = (hull_mask > 0) & (floor_mask == 0)
    tint = rng.uniform(200, 255, 3)
    img[wall] = img[wall] * 0.9 + tint.astype(np.float32) * 0.1
    circ_f, circ_r = _circle(0.0), _circle(scene.wall_h)
    far = circ_f[:, 1] >= 0
    edge = tuple(bedding * 0.6)
    cv2.polylines(img, [floor[far]], False, edge, 1, cv2.LINE_AA, 4)
    cv2.polylines(img, [rim[circ_r[:, 1] >= 0]], False, tuple(tint), 1, cv2.LINE_AA, 4)
    overlay = np.zeros((h, w, 3), np.float32)
    overlay_a = np.zeros((h, w), np.float32)
    cv2.polylines(overlay, [rim[circ_r[:, 1] < 0]], False, tuple(float(c) for c in tint), 2, cv2.LINE_AA, 4)
    cv2.polylines(overlay_a, [rim[circ_r[:, 1] < 0]], False, 0.5, 2, cv2.LINE_AA, 4)
    for _ in range(rng.integers(1, 4)):  # vertical glints on the near wall
        ang = rng.uniform(math.pi * 1.1, math.pi * 1.9)
        p0, p1 = (math.cos(ang), math.sin(ang), 0.0), (math.cos(ang), math.sin(ang), scene.wall_h)
        seg = _poly(scene, np.array([p0, p1]))
        width = int(rng.uniform(2, 6) * scene.scale / 150) + 1
        cv2.line(overlay, tuple(seg[0]), tuple(seg[1]), (255, 255, 255), width, cv2.LINE_AA, 4)
        cv2.line(overlay_a, tuple(seg[0]), tuple(seg[1]), float(rng.uniform(0.06, 0.18)), width, cv2.LINE_AA, 4)
    overlay_a = cv2.GaussianBlur(overlay_a, (0, 0), 1.0)
    # light: a gradient, a vignette and a soft spot
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = xs / w - 0.5, ys / h - 0.5
    sx, sy = rng.uniform(-0.3, 0.3, 2)
    illum = brightness * (1.0 + rng.uniform(-0.25, 0.25) * xn + rng.uniform(-0.25, 0.25) * yn)
    illum = illum * (1.0 - rng.uniform(0.0, 0.6) * (xn ** 2 + yn ** 2)) + rng.uniform(0.0, 0.25) * np.exp(
        -((xn - sx) ** 2 + (yn - sy) ** 2) / rng.uniform(0.02, 0.1))
    scene.illum = illum.astype(np.float32)
    plain = img * scene.illum[..., None]
    lit_overlay = np.minimum(overlay * scene.illum[..., None], 255.0)
    scene.bg_plain = np.clip(plain, 0, 255).astype(np.uint8)
    scene.bg = np.clip(plain * (1 - overlay_a[..., None]) + lit_overlay * overlay_a[..., None], 0, 255).astype(np.uint8)
    scene.overlay, scene.overlay_a = lit_overlay, overlay_a
    # reflections show on the wall band, fading with height above the floor's far edge
    first_floor_row = np.where(floor_mask.any(axis=0), floor_mask.argmax(axis=0), h).astype(np.float32)
    wall_px = max(2.0, scene.scale * scene.wall_h * scene.cos_el)
    fade = np.clip(1.0 - (first_floor_row[None, :] - ys) / wall_px, 0.0, 1.0)
    band = np.where(wall, 0.25 + 0.75 * fade, 0.0).astype(np.float32)
    scene.band = cv2.GaussianBlur(band, (0, 0), 1.0)
    rows, cols = np.nonzero(scene.band > 0.02)
    scene.band_box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) if len(rows) else (0, 0, 0, 0)
    if scene.noise > 0.3:
        bank = []
        for _ in range(6):
            n = rng.standard_normal((h, w, 1 if scene.gray else 3), dtype=np.float32) * scene.noise
            bank.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
        scene.noise_bank = bank


# ---------------------------------------------------------------------------------------------
# Rendering a video frame by frame.

class SynthFrame(NamedTuple):
    image: np.ndarray                 # (H, W, 3) uint8 RGB
    rat_box: tuple                    # (x0, y0, x1, y1) pixels, the rat's body (tail and cable left out)
    reflection_box: Optional[tuple]   # (x0, y0, x1, y1) pixels of the visible reflection's body, or None
    label_id: int                     # the ground-truth action unit at this frame
    rat_mask: Optional[np.ndarray]    # (H, W) uint8 pixels the rat's body was drawn on, as rat_box bounds it (only when asked for)


class _Body:
    """Where the rat is in the chamber: integrates the pose's speed and turning, keeps off the wall."""

    def __init__(self, rng, scene: Scene):
        self.reach = 1.0 - 0.5 * scene.rat_len  # the body centre stays this close to the centre
        r, a = self.reach * math.sqrt(rng.uniform(0.05, 1.0)), rng.uniform(0, TAU)  # rats keep to the walls
        self.x, self.y, self.heading = r * math.cos(a), r * math.sin(a), rng.uniform(0, TAU)
        self.gait = 0.0

    def step(self, p: np.ndarray, dt: float, rat_len: float) -> None:
        speed = p[F["speed"]] * rat_len
        moving = min(1.0, speed / (0.3 * rat_len))
        turn = p[F["turn"]]
        r = math.hypot(self.x, self.y) + 1e-9
        nx, ny = self.x / r, self.y / r
        wall = p[F["wall"]]
        if abs(wall) > 0.05:  # circle along the wall, at a radius just inside reach
            tx, ty = (-ny, nx) if wall > 0 else (ny, -nx)
            inward = 3.0 * (r - (self.reach - 0.05))
            want = math.atan2(ty - inward * ny, tx - inward * nx)
            turn += abs(wall) * 6.0 * _wrap(want - self.heading) * moving
        out = math.cos(self.heading) * nx + math.sin(self.heading) * ny
        near = (r - (self.reach - 0.2)) / 0.2
        if near > 0 and out > 0:  # approaching the wall head-on: veer along it
            cross = math.cos(self.heading) * ny - math.sin(self.heading) * nx
            turn += math.copysign(4.0 * near * out, cross if cross else 1.0) * moving
        self.heading += turn * dt
        self.x += speed * math.cos(self.heading) * dt
        self.y += speed * math.sin(self.heading) * dt
        r = math.hypot(self.x, self.y)
        if r > self.reach:
            self.x, self.y = self.x * self.reach / r, self.y * self.reach / r
        self.gait += TAU * p[F["gait_freq"]] * dt


def _wrap(a: float) -> float:
    return (a + math.pi) % TAU - math.pi


def _draw_prims(img, u, v, k, depth, prims, colours, rat_len, skip_colour=None):
    """Painter's algorithm over the skeleton's circles and limb/tail segments."""
    kinds = prims[:, 0]
    a, b = prims[:, 1].astype(int), prims[:, 2].astype(int)
    size = prims[:, 3] * rat_len * k[a]
    order = np.argsort(-(depth[a] + depth[b]) * 0.5, kind="stable")
    ua, va = np.round(u[a] * 16).astype(np.int64), np.round(v[a] * 16).astype(np.int64)
    ub, vb = np.round(u[b] * 16).astype(np.int64), np.round(v[b] * 16).astype(np.int64)
    for i in order:
        col = colours[int(prims[i, 4])]
        if kinds[i] == 0:
            cv2.circle(img, (int(ua[i]), int(va[i])), max(8, int(size[i] * 16)), col, -1, cv2.LINE_AA, 4)
        else:
            cv2.line(img, (int(ua[i]), int(va[i])), (int(ub[i]), int(vb[i])), col, max(1, int(round(size[i]))), cv2.LINE_AA, 4)


def _extent(u, v, k, prims, rat_len, width=None, height=None):
    """(x0, y0, x1, y1) box of the drawn primitives, in pixel-area coordinates (pixel i spans [i, i + 1)).

    With a frame size, each primitive is clipped to the frame first, so parts out of view do not
    stretch the box along the frame's edge.
    """
    a, b = prims[:, 1].astype(int), prims[:, 2].astype(int)
    size = prims[:, 3] * rat_len * k[a]
    # as drawn: circles of at least half a pixel, lines at least one pixel thick; cv2's anti-aliasing
    # spills up to 2.7 px beyond either (measured; most for small circles)
    half = np.where(prims[:, 0] == 0, np.maximum(size, 0.5), np.maximum(1.0, np.round(size)) / 2) + 2.7
    x0 = np.minimum(u[a], u[b]) - half + 0.5  # cv2 puts pixel centres on integers, hence + 0.5
    x1 = np.maximum(u[a], u[b]) + half + 0.5
    y0 = np.minimum(v[a], v[b]) - half + 0.5
    y1 = np.maximum(v[a], v[b]) + half + 0.5
    if width is not None:
        x0, y0 = np.maximum(x0, 0.0), np.maximum(y0, 0.0)
        x1, y1 = np.minimum(x1, float(width)), np.minimum(y1, float(height))
        seen = (x1 > x0) & (y1 > y0)
        if seen.any():
            x0, y0, x1, y1 = x0[seen], y0[seen], x1[seen], y1[seen]
    return float(x0.min()), float(y0.min()), float(x1.max()), float(y1.max())


def _clip_box(box, w, h):
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def render_frames(scene: Scene, timeline: Sequence, labels: list, fps: float, n_frames: int,
                  rng: np.random.Generator, with_masks: bool = False) -> Iterator[SynthFrame]:
    """Yield the video's frames one at a time. labels: (start_s, end_s, au_id) for SynthFrame.label_id."""
    prims = np.array(_PRIMS + (_CAP_PRIMS if scene.cap else []), dtype=float)
    boxed = _without_tail(prims)
    body = _Body(rng, scene)
    dt = 1.0 / fps
    w, h = scene.width, scene.height
    starts = [s for s, _, _ in labels]
    cable_ctrl = None
    top = np.array([[0.0, 0.0, 3.0]])
    tu, tv, _, _ = scene.project(top)
    top_uv = np.array([tu[0], tv[0]])
    noise_pick = np.random.default_rng(rng.integers(2 ** 32))
    for n in range(n_frames):
        t = n * dt
        p = timeline.pose(t)
        body.step(p, dt, scene.rat_len)
        local = body_points(p, body.gait)
        c, s = math.cos(body.heading), math.sin(body.heading)
        world = np.empty_like(local)
        world[:, 0] = body.x + scene.rat_len * (c * local[:, 0] - s * local[:, 1])
        world[:, 1] = body.y + scene.rat_len * (s * local[:, 0] + c * local[:, 1])
        world[:, 2] = scene.rat_len * local[:, 2]
        u, v, k, depth = scene.project(world)
        light = float(scene.illum[int(min(max(np.median(v), 0), h - 1)), int(min(max(np.median(u), 0), w - 1))])
        colours = [tuple(float(x) for x in np.minimum(col * light, 255)) for col in scene.colours]
        box = _extent(u, v, k, prims, scene.rat_len, w, h)  # all that is drawn, tail included
        frame = scene.bg.copy()
        # region the rat, its shadow and the wall overlay touch: restore the plain background there
        rx0, ry0 = int(max(0, box[0] - 4)), int(max(0, box[1] - 4))
        rx1, ry1 = int(min(w, box[2] + 4)), int(min(h, box[3] + 4))
        if rx1 > rx0 and ry1 > ry0:
            frame[ry0:ry1, rx0:rx1] = scene.bg_plain[ry0:ry1, rx0:rx1]
        reflection_box = _draw_reflection(frame, scene, world, prims, boxed, colours, body)
        _draw_shadow(frame, scene, body, p)
        _draw_prims(frame, u, v, k, depth, prims, colours, scene.rat_len)
        if rx1 > rx0 and ry1 > ry0:
            a = scene.overlay_a[ry0:ry1, rx0:rx1, None]
            roi = frame[ry0:ry1, rx0:rx1].astype(np.float32)
            frame[ry0:ry1, rx0:rx1] = (roi * (1 - a) + scene.overlay[ry0:ry1, rx0:rx1] * a).astype(np.uint8)
        if scene.cap:
            anchor = np.array([u[19], v[19]])
            want = anchor + (top_uv - anchor) * 0.45 + np.array([0.0, 0.1 * (top_uv[1] - anchor[1])])
            cable_ctrl = want if cable_ctrl is None else cable_ctrl + 0.35 * (want - cable_ctrl)  # the cable lags
            tt = np.linspace(0.0, 1.0, 12)[:, None]
            curve = (1 - tt) ** 2 * anchor + 2 * (1 - tt) * tt * cable_ctrl + tt ** 2 * top_uv
            col = tuple(float(x) * light for x in scene.cable_colour)
            cv2.polylines(frame, [np.round(curve * 16).astype(np.int32)], False, col,
                          max(1, int(round(scene.cable_px * scene.scale / 150))), cv2.LINE_AA, 4)
        frame = _camera(frame, scene, t, noise_pick)
        mask = None
        if with_masks:
            mask = np.zeros((h, w), np.uint8)
            _draw_prims(mask, u, v, k, depth, boxed, [255] * 6, scene.rat_len)
        label = labels[min(max(bisect_right(starts, t) - 1, 0), len(labels) - 1)][2]
        rat_box = _clip_box(_extent(u, v, k, boxed, scene.rat_len, w, h), w, h)
        yield SynthFrame(frame, rat_box, reflection_box, label, mask)


def _draw_shadow(frame, scene: Scene, body: _Body, p) -> None:
    a = np.linspace(0, TAU, 16, endpoint=False)
    c, s = math.cos(body.heading), math.sin(body.heading)
    ex, ey = 0.45 * scene.rat_len * np.cos(a), 0.17 * scene.rat_len * np.sin(a)
    pts = np.stack([body.x + c * ex - s * ey, body.y + s * ex + c * ey, np.zeros_like(a)], axis=1)
    poly = _poly(scene, pts)
    x0, y0 = np.maximum(poly.min(axis=0) // 16 - 1, 0)
    x1, y1 = np.minimum(poly.max(axis=0) // 16 + 2, [scene.width, scene.height])
    if x1 <= x0 or y1 <= y0:
        return
    roi = frame[y0:y1, x0:x1]
    dark = roi.copy()
    cv2.fillPoly(dark, [poly - np.array([x0 * 16, y0 * 16])], (0, 0, 0), cv2.LINE_AA, 4)
    strength = scene.shadow / (1.0 + 4.0 * p[F["z"]])
    cv2.addWeighted(dark, strength, roi, 1 - strength, 0, dst=roi)


def _draw_reflection(frame, scene: Scene, world, prims, boxed, colours, body: _Body) -> Optional[tuple]:
    """The rat mirrored about the wall tangent nearest to it, faded, seen only on the wall band.
    Returns the box of the visible part of the primitives `boxed` (the body: see _without_tail)."""
    r = math.hypot(body.x, body.y)
    near = min(1.0, max(0.0, 1.0 - (body.reach - r) / 0.45)) ** 1.5
    strength = scene.reflection * near
    if strength < 0.02 or scene.band_box[2] == 0:
        return None
    nx, ny = (body.x / r, body.y / r) if r > 1e-6 else (0.0, 1.0)
    along = world[:, 0] * nx + world[:, 1] * ny
    mirrored = world.copy()
    mirrored[:, 0] += 2.0 * (1.0 - along) * nx
    mirrored[:, 1] += 2.0 * (1.0 - along) * ny
    u, v, k, depth = scene.project(mirrored)
    ext = _extent(u, v, k, prims, scene.rat_len)
    bx0, by0, bx1, by1 = scene.band_box
    x0, y0 = int(max(ext[0], bx0)), int(max(ext[1], by0))
    x1, y1 = int(min(ext[2] + 1, bx1)), int(min(ext[3] + 1, by1))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    roi = frame[y0:y1, x0:x1]
    drawn = roi.copy()

    def faded(drawn_prims) -> np.ndarray:
        # how strongly the reflection of these primitives shows at each pixel of the region
        mask = np.zeros(roi.shape[:2], np.uint8)
        _draw_prims(mask, u - x0, v - y0, k, depth, drawn_prims, [255] * 6, scene.rat_len)
        return cv2.GaussianBlur(mask.astype(np.float32) * (strength / 255.0), (0, 0), 0.8) * scene.band[y0:y1, x0:x1]

    _draw_prims(drawn, u - x0, v - y0, k, depth, prims, colours, scene.rat_len)
    alpha = faded(prims)
    roi[:] = (roi * (1 - alpha[..., None]) + drawn * alpha[..., None]).astype(np.uint8)
    ys, xs = np.nonzero(faded(boxed) > 0.08)  # fainter than this, a person would not call it a reflection
    if len(xs) < 12:
        return None
    return (float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1))


def _camera(frame, scene: Scene, t: float, rng) -> np.ndarray:
    """What the camera adds: flicker, defocus, sensor noise, infrared monochrome."""
    if scene.flicker > 0:
        gain = 1.0 + scene.flicker * math.sin(TAU * scene.flicker_hz * t + scene.flicker_phase)
        frame = cv2.convertScaleAbs(frame, alpha=gain)
    if scene.blur > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), scene.blur)
    if scene.gray:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None]
    if scene.noise_bank:
        plus, minus = scene.noise_bank[rng.integers(len(scene.noise_bank))]
        frame = cv2.subtract(cv2.add(frame, plus), minus)
        if frame.ndim == 2:
            frame = frame[..., None]
    if scene.gray:
        frame = cv2.cvtColor(frame.reshape(scene.height, scene.width), cv2.COLOR_GRAY2RGB)
    return frame
