"""Per-study-type skeletons for the synthetic radiographs, as shapes of `xray` in the anatomy frame.

Stylised but recognisable: elbow = humerus meeting radius and ulna at a joint; forearm = two parallel long bones;
humerus = one long bone with head and condyles; shoulder = humeral head against the glenoid, clavicle, acromion and ribs;
hand = carpals, metacarpals and finger rays; finger = one ray of three phalanges; wrist = distal radius/ulna, two carpal
rows and metacarpal bases. Each function returns the shapes and the indices of the bones a finding may be put on.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from simclr_mura.datasets.xray import Arc, Blob, Bone, Soft

Shapes = list


@dataclasses.dataclass
class View:
  """How one image sees the part: `squeeze` < 1 for lateral/oblique views (bones overlap), `flex` bends joints."""
  squeeze: float
  flex: float
  young: bool
  size: float  # patient's bone size factor (about 0.85-1.15)


def _rot(p, angle: float, about=(0.0, 0.0)):
  c, s = math.cos(angle), math.sin(angle)
  x, y = p[0] - about[0], p[1] - about[1]
  return (c * x - s * y + about[0], s * x + c * y + about[1])


def _ray(base, direction: float, lengths, radii, gap: float, bend: float = 0.0) -> list[Bone]:
  """A chain of bones (e.g. a finger) from `base`, heading `direction` (radians; 0 = up = -v), bending at joints."""
  bones, p, ang = [], base, direction
  for i, (length, r) in enumerate(zip(lengths, radii)):
    d = (math.sin(ang), -math.cos(ang))
    end = (p[0] + d[0] * length, p[1] + d[1] * length)
    tuft = 1.25 if i == len(lengths) - 1 else 1.1
    bones.append(Bone(p, end, r=r, r0=r * 1.45, r1=r * tuft, cortex=0.32))
    p = (end[0] + d[0] * gap, end[1] + d[1] * gap)
    ang += bend
  return bones


def elbow(view: View, rng: np.random.Generator) -> tuple[Shapes, list[int]]:
  k = view.size
  flex = view.flex
  sq = view.squeeze
  s: Shapes = [Soft((0, -1.7), (0, 0), 0.34 * k, 0.9)]
  fore_soft = Soft((0, 0), _rot((0, 1.7), flex), 0.3 * k, 0.9)
  s.append(fore_soft)
  humerus = Bone((0, -1.6), (0, -0.16 * k), r=0.085 * k, r0=0.09 * k, r1=0.2 * k * (0.55 + 0.45 * sq))
  s.append(humerus)
  s += [Blob((-0.12 * k * sq, -0.06 * k), 0.09 * k, 0.075 * k), Blob((0.12 * k * sq, -0.07 * k), 0.085 * k, 0.07 * k),
        Blob((-0.23 * k * sq, -0.15 * k), 0.045 * k, 0.05 * k), Blob((0.22 * k * sq, -0.16 * k), 0.04 * k, 0.05 * k)]
  ulna = Bone(_rot((0.07 * k * sq, 0.05 * k), flex), _rot((0.1 * k * sq, 1.6), flex), r=0.05 * k, r0=0.1 * k,
              r1=0.045 * k)
  radius = Bone(_rot((-0.12 * k * sq, 0.08 * k), flex), _rot((-0.15 * k * sq, 1.6), flex), r=0.055 * k, r0=0.075 * k,
                r1=0.1 * k)
  olecranon = Blob(_rot((0.1 * k * sq + 0.1 * k * (1 - sq), -0.05 * k), flex), 0.07 * k, 0.1 * k, angle=flex)
  s += [ulna, radius, olecranon]
  if view.young:
    humerus.physis = 0.14 * k
  targets = [2, 7, 8]  # humerus, ulna, radius
  return s, targets


def forearm(view: View, rng: np.random.Generator) -> tuple[Shapes, list[int]]:
  k, sq = view.size, view.squeeze
  s: Shapes = [Soft((0, -1.5), (0, 1.5), 0.3 * k, 0.9)]
  ulna = Bone((0.13 * k * sq, -1.25), (0.11 * k * sq, 1.25), r=0.05 * k, r0=0.1 * k, r1=0.045 * k)
  radius = Bone((-0.13 * k * sq, -1.15), (-0.17 * k * sq, 1.25), r=0.055 * k, r0=0.07 * k, r1=0.14 * k)
  s += [ulna, radius]
  s.append(Bone((0, -2.4), (0, -1.42), r=0.085 * k, r0=0.09 * k, r1=0.2 * k))  # distal humerus at the edge
  for i, x in enumerate((-0.2, -0.05, 0.1)):
    s.append(Blob((x * k * sq, 1.5 + 0.02 * i), 0.07 * k, 0.06 * k))  # proximal carpal row at the edge
  if view.young:
    radius.physis = 0.1 * k
    ulna.physis = 0.08 * k
  return s, [1, 2]


def humerus(view: View, rng: np.random.Generator) -> tuple[Shapes, list[int]]:
  k, sq = view.size, view.squeeze
  s: Shapes = [Soft((0, -1.4), (0, 1.5), 0.4 * k, 0.9), Soft((-1.6, -1.6), (-1.6, 0.2), 0.9, 0.35)]
  shaft = Bone((0, 1.05), (0.02, -0.95), r=0.08 * k, r0=0.2 * k * (0.6 + 0.4 * sq), r1=0.13 * k)
  s.append(shaft)
  s += [Blob((0.08 * k, -1.08), 0.2 * k, 0.2 * k, cortex=0.12), Blob((-0.14 * k * sq, -0.98), 0.07 * k, 0.09 * k),
        Blob((-0.12 * k * sq, 1.12), 0.08 * k, 0.07 * k), Blob((0.12 * k * sq, 1.12), 0.08 * k, 0.07 * k),
        Arc((0.08 * k, -1.08), 0.25 * k, math.pi - 0.5, math.pi + 0.5, 0.035 * k, density=0.8)]
  if view.young:
    shaft.physis = 0.18 * k
  return s, [2]


def shoulder(view: View, rng: np.random.Generator, dislocate: tuple[float, float] = (0.0, 0.0)
             ) -> tuple[Shapes, list[int]]:
  k = view.size
  dx, dy = dislocate
  s: Shapes = [Soft((-1.9, -1.2), (-1.9, 2.0), 1.3, 0.28), Soft((0.3, 0.0), (0.5, 2.2), 0.5 * k, 0.85),
               Soft((-0.6, -0.6), (0.4, -0.35), 0.4 * k, 0.8)]
  for i in range(4):  # ribs: thin arcs around a far-away centre (chest wall), dimmer than the shoulder bones
    s.append(Arc((-2.1, 0.6 + 0.4 * i), 1.35 + 0.05 * i, -0.9, 0.5, 0.035, cortex=0.4, density=0.55))
  s.append(Blob((-0.62, 0.35), 0.33 * k, 0.62 * k, angle=0.35, cortex=1.0, density=0.07))  # scapula body (thin plate)
  s.append(Bone((0.1, -0.36), (-1.1, -0.12), r=0.035 * k, r0=0.05 * k, r1=0.03 * k, density=0.7))  # scapular spine
  s.append(Bone((-0.22, 0.15), (-0.7, 1.05), r=0.04 * k, r0=0.05 * k, r1=0.05 * k))  # lateral border
  s.append(Arc((0.15, 0.0), 0.36 * k, math.pi - 0.65, math.pi + 0.65, 0.045 * k, density=0.9))  # glenoid rim
  s.append(Bone((-1.6, -0.85 + 0.05 * view.flex), (0.22, -0.52), r=0.06 * k, r0=0.08 * k, r1=0.08 * k))  # clavicle
  s.append(Blob((0.22, -0.42), 0.2 * k, 0.07 * k, angle=0.2))  # acromion
  s.append(Blob((-0.12, -0.3), 0.05 * k, 0.11 * k, angle=-0.4))  # coracoid
  # the humerus group (moved together by a dislocation)
  rot = 0.4 * view.squeeze - 0.2  # internal / external rotation changes where the tuberosity projects
  head = Blob((0.16 + dx, 0.0 + dy), 0.3 * k, 0.3 * k, cortex=0.1, density=0.5)
  shaft = Bone((0.23 + dx, 0.3 + dy), (0.36 + dx, 1.9 + dy), r=0.11 * k, r0=0.14 * k, r1=0.11 * k)
  tub = Blob((0.4 + dx + 0.1 * rot, -0.05 + dy), 0.11 * k, 0.14 * k)
  s += [head, shaft, tub]
  if view.young:
    shaft.physis = 1.55 * k
  return s, [len(s) - 2, len(s) - 2, 11]  # shaft (twice as likely), clavicle


def hand(view: View, rng: np.random.Generator) -> tuple[Shapes, list[int]]:
  k, sq = view.size, view.squeeze
  s: Shapes = [Soft((-0.05 * sq, 0.25), (0, 1.7), 0.42 * k * (0.6 + 0.4 * sq), 0.9)]
  bones: list = []
  # distal radius and ulna, carpal rows
  bones.append(Bone((-0.14 * sq, 1.75), (-0.12 * sq, 0.98), r=0.08 * k, r0=0.08 * k, r1=0.18 * k * (0.6 + 0.4 * sq)))
  bones.append(Bone((0.22 * sq, 1.75), (0.21 * sq, 1.03), r=0.055 * k, r0=0.06 * k, r1=0.075 * k))
  for x, y, r in ((-0.28, 0.8, 0.09), (-0.08, 0.82, 0.08), (0.1, 0.8, 0.07), (0.22, 0.74, 0.05),
                  (-0.32, 0.6, 0.075), (-0.16, 0.6, 0.065), (0.01, 0.6, 0.09), (0.18, 0.6, 0.08)):
    bones.append(Blob((x * k * sq, y), r * k * rng.uniform(0.9, 1.1), r * k * rng.uniform(0.85, 1.05),
                      angle=rng.uniform(0, math.pi)))
  targets = []
  spread = rng.uniform(0.6, 1.3) * sq
  for i, (x, ang, lm, lp) in enumerate(((-0.16, -0.14, 0.6, 0.4), (-0.02, -0.04, 0.58, 0.42),
                                        (0.12, 0.06, 0.52, 0.38), (0.25, 0.16, 0.46, 0.3))):
    base = (x * k * sq, 0.47)
    a = ang * spread
    meta = Bone(base, (base[0] + math.sin(a) * lm * k, base[1] - math.cos(a) * lm * k), r=0.042 * k, r0=0.06 * k,
                r1=0.062 * k)
    targets.append(len(bones))
    bones.append(meta)
    tip_dir = a * 1.3
    start = (meta.p1[0] + math.sin(tip_dir) * 0.06 * k, meta.p1[1] - math.cos(tip_dir) * 0.06 * k)
    finger = _ray(start, tip_dir, [lp * k, lp * 0.62 * k, lp * 0.45 * k], [0.036 * k, 0.03 * k, 0.026 * k],
                  0.035 * k, bend=view.flex * 0.3)
    targets.append(len(bones))
    bones += finger
    s.append(Soft(start, finger[-1].p1, 0.075 * k, 0.9))
  thumb_base = (-0.3 * k * sq, 0.5)
  thumb = _ray(thumb_base, -0.75 * (0.5 + 0.5 * sq), [0.38 * k, 0.3 * k, 0.22 * k], [0.045 * k, 0.04 * k, 0.033 * k],
               0.04 * k, bend=0.1)
  s.append(Soft(thumb[1].p0, thumb[-1].p1, 0.09 * k, 0.9))
  targets.append(len(bones))
  bones += thumb
  if view.young:
    bones[0].physis = 0.07 * k
  s += bones
  off = len(s) - len(bones)
  return s, [off + 0] + [off + t for t in targets]


def finger(view: View, rng: np.random.Generator) -> tuple[Shapes, list[int]]:
  k = view.size * 2.0
  s: Shapes = [Soft((0, 1.8), (0, -0.95 * k / 2), 0.19 * k, 0.9)]
  bones = [Bone((0, 1.9), (0, 0.95), r=0.045 * k, r0=0.05 * k, r1=0.065 * k)]  # metacarpal head
  bones += _ray((0, 0.86), rng.normal(0, 0.05), [0.4 * k, 0.25 * k, 0.17 * k], [0.036 * k, 0.031 * k, 0.027 * k],
                0.035 * k, bend=view.flex * 0.5)
  if rng.random() < 0.6:  # a neighbouring ray at the edge, overlapping in oblique views
    side = rng.choice([-1, 1])
    x = side * (0.5 + 0.5 * view.squeeze) * 0.35 * k
    s.append(Soft((x, 1.8), (x, -0.3), 0.17 * k, 0.9))
    bones += _ray((x, 1.9), side * 0.1, [0.6 * k, 0.35 * k], [0.036 * k, 0.03 * k], 0.035 * k)
  if view.young:
    bones[1].physis = -0.03 * k  # at the base of the proximal phalanx
  s += bones
  off = len(s) - len(bones)
  return s, [off + 1, off + 1, off + 2, off + 3]  # proximal phalanx twice as likely


def wrist(view: View, rng: np.random.Generator) -> tuple[Shapes, list[int]]:
  k, sq = view.size * 1.6, view.squeeze
  s: Shapes = [Soft((0, -1.5), (0, 1.8), 0.36 * k * (0.6 + 0.4 * sq), 0.9)]
  radius = Bone((-0.13 * sq * k, 1.9), (-0.1 * sq * k, 0.5), r=0.07 * k, r0=0.07 * k, r1=0.16 * k * (0.6 + 0.4 * sq))
  ulna = Bone((0.22 * sq * k, 1.9), (0.2 * sq * k, 0.55), r=0.05 * k, r0=0.05 * k, r1=0.065 * k)
  s += [radius, ulna, Blob((0.27 * sq * k, 0.5), 0.025 * k, 0.05 * k)]  # ulnar styloid
  for x, y, r in ((-0.26, 0.26, 0.09), (-0.07, 0.3, 0.08), (0.1, 0.27, 0.07), (0.2, 0.2, 0.045),
                  (-0.3, 0.03, 0.075), (-0.15, 0.04, 0.065), (0.01, 0.03, 0.09), (0.17, 0.04, 0.08)):
    s.append(Blob((x * k * sq, y * k), r * k * rng.uniform(0.9, 1.1), r * k * rng.uniform(0.85, 1.05),
                  angle=rng.uniform(0, math.pi)))
  for x, ang in ((-0.33, -0.5), (-0.16, -0.14), (-0.02, -0.04), (0.12, 0.06), (0.25, 0.16)):
    base = (x * k * sq, -0.12 * k)
    s.append(Bone(base, (base[0] + math.sin(ang * sq) * 1.2, base[1] - math.cos(ang * sq) * 1.2), r=0.042 * k,
                  r0=0.06 * k, r1=0.06 * k))
  if view.young:
    radius.physis = 0.09 * k
  return s, [1, 1, 1, 2]  # mostly the distal radius


ANATOMY: dict[str, Callable] = {
    "elbow": elbow, "finger": finger, "forearm": forearm, "hand": hand, "humerus": humerus, "shoulder": shoulder,
    "wrist": wrist,
}
