"""The synthetic rat's behaviours: the motion of each action unit and a video's timeline of them.

A behaviour is a pure function of time that returns a pose vector (speed, head pitch, forelimb
lift, rearing, rolling onto the side, ...; body.py). A video's timeline cross-fades the poses of
neighbouring behaviours, so a boundary shows only as a change of motion.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from .body import TAU, F, _pose


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
