"""A tiny radiograph renderer: attenuation of tubes, ellipsoids, arcs and metal, projected to a film-like image.

Shapes live in an "anatomy frame" (the limb's long axis along +v, about 2 units long) and are evaluated on the pixels of
their own bounding box only, through the image's affine map (rotation, scale, flip, shift). Each shape adds its X-ray
path length times an attenuation coefficient: a hollow tube's chord is longest through its walls, which gives long bones
their bright cortical rims on a darker medulla, as on a real radiograph.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from simclr_mura.datasets.visit import MarkerStyle, Technique

Point = tuple[float, float]

MU_SOFT = 0.6
MU_CORTEX = 7.0
MU_MARROW = 1.3
MU_METAL = 70.0


@dataclasses.dataclass
class Bone:
  """A long bone: a tube from p0 to p1 with flared, rounded ends (radii r0, r1) and shaft radius r."""
  p0: Point
  p1: Point
  r: float
  r0: float
  r1: float
  cortex: float = 0.3  # wall thickness as a fraction of the radius
  density: float = 1.0
  physis: float = 0.0  # a growth plate (dark band, young patients, normal) this far from p1 (>0) or p0 (<0)
  fracture: tuple | None = None  # (t, obliquity_rad, gap, shift, angle_rad, shortening)


@dataclasses.dataclass
class Blob:
  """An ellipsoidal bone (carpal, condyle, humeral head) with a thin cortex."""
  c: Point
  rx: float
  ry: float
  angle: float = 0.0
  cortex: float = 0.18
  density: float = 0.75  # epiphyses and carpals are mostly spongy bone


@dataclasses.dataclass
class Arc:
  """A curved tube along a circle of radius rho around c, between angles a0 and a1 (glenoid rim, ribs)."""
  c: Point
  rho: float
  a0: float
  a1: float
  r: float
  cortex: float = 0.35
  density: float = 1.0


@dataclasses.dataclass
class Soft:
  """Soft tissue: a solid cylinder (capsule) of radius r from p0 to p1."""
  p0: Point
  p1: Point
  r: float
  density: float = 1.0
  additive: bool = False  # False: union with the other soft tissue (limb segments meeting at a joint); True: extra


@dataclasses.dataclass
class Metal:
  """A metal bar (plate, screw, wire) centred at c, half-length hl along angle, half-width hw."""
  c: Point
  angle: float
  hl: float
  hw: float
  density: float = 1.0


@dataclasses.dataclass
class Lesion:
  """A lytic lesion: bone density inside the ellipse drops by `depth` (0-1), with an optional sclerotic rim."""
  c: Point
  rx: float
  ry: float
  angle: float
  depth: float
  rim: float = 0.0


@dataclasses.dataclass
class Affine:
  """Anatomy frame -> pixels: x = scale * R(theta) * diag(flip, 1) * u + shift."""
  scale: float
  theta: float
  flip: float
  cx: float
  cy: float

  def to_pixel(self, p: Point) -> tuple[float, float]:
    u, v = p[0] * self.flip, p[1]
    c, s = math.cos(self.theta), math.sin(self.theta)
    return self.scale * (c * u - s * v) + self.cx, self.scale * (s * u + c * v) + self.cy

  def from_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(self.theta), math.sin(self.theta)
    dx, dy = (x - self.cx) / self.scale, (y - self.cy) / self.scale
    return (c * dx + s * dy) * self.flip, -s * dx + c * dy


class Film:
  """Accumulates attenuation layers on an h x w grid."""

  def __init__(self, h: int, w: int, affine: Affine):
    self.h, self.w, self.affine = h, w, affine
    self.soft = np.zeros((h, w), np.float32)
    self.bone = np.zeros((h, w), np.float32)
    self.metal = np.zeros((h, w), np.float32)

  def _window(self, points: list[Point], margin: float):
    """Pixel slices covering the points +- margin (anatomy units), and the anatomy coordinates of those pixels."""
    xy = np.array([self.affine.to_pixel(p) for p in points])
    m = margin * self.affine.scale + 2
    x0, y0 = np.floor(xy.min(0) - m).astype(int)
    x1, y1 = np.ceil(xy.max(0) + m).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
    if x0 >= x1 or y0 >= y1:
      return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    u, v = self.affine.from_pixel(xs + 0.5, ys + 0.5)
    return (slice(y0, y1), slice(x0, x1)), u, v

  def add(self, shape) -> None:
    draw = {Bone: self._bone, Blob: self._blob, Arc: self._arc, Soft: self._soft, Metal: self._metal,
            Lesion: self._lesion}[type(shape)]
    draw(shape)

  # --- shapes -------------------------------------------------------------------------------------------------------
  def _bone(self, b: Bone) -> None:
    rmax = max(b.r, b.r0, b.r1)
    pts = [b.p0, b.p1]
    if b.fracture:
      t, obl, gap, shift, angle, shortening = b.fracture
      length = math.dist(b.p0, b.p1)
      pts.append(_displace(b.p1, b, t, shift, angle, shortening))
      rmax += abs(shift) + abs(angle) * length
    win = self._window(pts, rmax)
    if win is None:
      return
    sl, u, v = win
    if not b.fracture:
      self.bone[sl] += _tube_field(b, u, v)
      return
    ax, ay, length = axis(b)
    fx, fy = b.p0[0] + ax * t * length, b.p0[1] + ay * t * length

    def line_at(uu, vv):  # signed distance past the (oblique, slightly jagged) fracture line
      along = (uu - fx) * ax + (vv - fy) * ay
      perp = -(uu - fx) * ay + (vv - fy) * ax
      return along + math.tan(obl) * perp + 0.15 * b.r * np.sin(perp / max(b.r, 1e-3) * 5.0)

    # proximal piece: pixels before the fracture line
    near = _tube_field(b, u, v) * _smoothstep(-line_at(u, v) - gap / 2, 0.004)
    # distal piece: same bone, rotated by `angle` about the fracture point, shifted sideways and along the axis
    ca, sa = math.cos(-angle), math.sin(-angle)
    du = u - fx - (-ay) * shift + ax * shortening
    dv = v - fy - ax * shift + ay * shortening
    u2, v2 = ca * du - sa * dv + fx, sa * du + ca * dv + fy
    far = _tube_field(b, u2, v2) * _smoothstep(line_at(u2, v2) - gap / 2, 0.004)
    self.bone[sl] += near + far

  def _blob(self, b: Blob) -> None:
    win = self._window([b.c], max(b.rx, b.ry))
    if win is None:
      return
    sl, u, v = win
    c, s = math.cos(b.angle), math.sin(b.angle)
    du, dv = u - b.c[0], v - b.c[1]
    q2 = ((c * du + s * dv) / b.rx) ** 2 + ((-s * du + c * dv) / b.ry) ** 2
    inner = (1 - b.cortex) ** 2
    outer_c = np.sqrt(np.maximum(1 - q2, 0))
    inner_c = np.sqrt(np.maximum(inner - q2, 0))
    depth = 2 * min(b.rx, b.ry)
    self.bone[sl] += b.density * depth * (MU_CORTEX * (outer_c - inner_c) + MU_MARROW * inner_c)

  def _arc(self, a: Arc) -> None:
    angles = np.linspace(a.a0, a.a1, 9)
    pts = [(a.c[0] + a.rho * math.cos(t), a.c[1] + a.rho * math.sin(t)) for t in angles]
    win = self._window(pts, a.r)
    if win is None:
      return
    sl, u, v = win
    du, dv = u - a.c[0], v - a.c[1]
    d = np.abs(np.hypot(du, dv) - a.rho)
    phi = np.arctan2(dv, du)
    mid, half = (a.a0 + a.a1) / 2, (a.a1 - a.a0) / 2
    off = np.abs(np.angle(np.exp(1j * (phi - mid))))  # angular distance to the middle of the arc
    taper = np.clip((half - off) / max(half * 0.25, 1e-3), 0, 1)
    self.bone[sl] += a.density * taper * _chord(d, a.r, a.cortex)

  def _soft(self, s: Soft) -> None:
    win = self._window([s.p0, s.p1], s.r)
    if win is None:
      return
    sl, u, v = win
    d = _segment_distance(u, v, s.p0, s.p1)[0]
    chord = s.density * MU_SOFT * 2 * np.sqrt(np.maximum(s.r * s.r - d * d, 0))
    if s.additive:
      self.soft[sl] += chord
    else:
      np.maximum(self.soft[sl], chord, out=self.soft[sl])

  def _metal(self, m: Metal) -> None:
    c, s = math.cos(m.angle), math.sin(m.angle)
    ends = [(m.c[0] + c * m.hl, m.c[1] + s * m.hl), (m.c[0] - c * m.hl, m.c[1] - s * m.hl)]
    win = self._window(ends, m.hw)
    if win is None:
      return
    sl, u, v = win
    du, dv = u - m.c[0], v - m.c[1]
    along, across = np.abs(c * du + s * dv), np.abs(-s * du + c * dv)
    edge = 0.004
    self.metal[sl] += m.density * MU_METAL * 0.03 * _smoothstep(m.hl - along, edge) * _smoothstep(m.hw - across, edge)

  def _lesion(self, les: Lesion) -> None:
    win = self._window([les.c], max(les.rx, les.ry) * 1.3)
    if win is None:
      return
    sl, u, v = win
    c, s = math.cos(les.angle), math.sin(les.angle)
    du, dv = u - les.c[0], v - les.c[1]
    q = np.sqrt(((c * du + s * dv) / les.rx) ** 2 + ((-s * du + c * dv) / les.ry) ** 2)
    hole = np.clip((1.0 - q) / 0.25, 0, 1) ** 0.7
    rim = les.rim * np.exp(-((q - 1.05) / 0.12) ** 2)
    self.bone[sl] *= (1 - les.depth * hole) * (1 + rim)

  # --- projection -----------------------------------------------------------------------------------------------------
  def attenuation(self) -> np.ndarray:
    return self.soft + self.bone + self.metal


def axis(b) -> tuple[float, float, float]:
  """Unit direction (ax, ay) and length of a bone or segment from p0 to p1."""
  dx, dy = b.p1[0] - b.p0[0], b.p1[1] - b.p0[1]
  length = math.hypot(dx, dy) or 1e-6
  return dx / length, dy / length, length


def _displace(p: Point, b: Bone, t: float, shift: float, angle: float, shortening: float) -> Point:
  """Where point p of a fractured bone's distal piece ends up."""
  ax, ay, length = axis(b)
  fx, fy = b.p0[0] + ax * t * length, b.p0[1] + ay * t * length
  ca, sa = math.cos(angle), math.sin(angle)
  du, dv = p[0] - fx, p[1] - fy
  return (ca * du - sa * dv + fx - ay * shift - ax * shortening, sa * du + ca * dv + fy + ax * shift - ay * shortening)


def _smoothstep(x, width: float):
  return np.clip(x / width + 0.5, 0, 1)


def _segment_distance(u, v, p0: Point, p1: Point):
  """Distance to the segment p0-p1 and the (unclipped) position t along it."""
  dx, dy = p1[0] - p0[0], p1[1] - p0[1]
  length2 = dx * dx + dy * dy or 1e-12
  t = ((u - p0[0]) * dx + (v - p0[1]) * dy) / length2
  tc = np.clip(t, 0, 1)
  return np.hypot(u - p0[0] - tc * dx, v - p0[1] - tc * dy), t


def _chord(d, radius, cortex):
  """Attenuation through a hollow tube of outer radius `radius` at distance d from its axis."""
  inner = radius * (1 - cortex)
  outer_c = np.sqrt(np.maximum(radius * radius - d * d, 0))
  inner_c = np.sqrt(np.maximum(inner * inner - d * d, 0))
  return 2 * (MU_CORTEX * (outer_c - inner_c) + MU_MARROW * inner_c)


def _tube_field(b: Bone, u, v):
  d, t = _segment_distance(u, v, b.p0, b.p1)
  tc = np.clip(t, 0, 1)
  flare = 0.22
  g0 = np.clip(1 - tc / flare, 0, 1) ** 2
  g1 = np.clip(1 - (1 - tc) / flare, 0, 1) ** 2
  radius = b.r + (b.r0 - b.r) * g0 + (b.r1 - b.r) * g1
  # ends are spongy bone with a thinner cortex than the shaft
  cortex = b.cortex * (1 - 0.5 * np.maximum(g0, g1))
  field = b.density * _chord(d, radius, cortex)
  if b.physis:
    length = math.dist(b.p0, b.p1)
    band = np.abs((1 - t) * length - b.physis) if b.physis > 0 else np.abs(t * length + b.physis)
    field = field * (1 - 0.7 * np.exp(-(band / 0.006) ** 2))
  return field


# --- film processing -------------------------------------------------------------------------------------------------

def develop(att: np.ndarray, rng: np.random.Generator, technique: Technique) -> np.ndarray:
  """Attenuation -> float image in [0, 1] with a `visit.Technique`: exposure, heel-effect gradient, fog, window, gamma
  (bone is bright). The heel effect's direction and strength follow the tube's placement for this view."""
  h, w = att.shape
  img = 1.0 - np.exp(-technique.exposure * att)
  gy, gx = np.ogrid[0:h, 0:w]
  gdir = rng.uniform(0, 2 * math.pi)
  grad = (np.cos(gdir) * (gx / w - 0.5) + np.sin(gdir) * (gy / h - 0.5)) * rng.uniform(0, 0.25)
  img = img * (1 + grad) + technique.fog
  img = np.clip((img - technique.lo) / (technique.hi - technique.lo), 0, 1) ** technique.gamma
  return img.astype(np.float32)


def texture(h: int, w: int, rng: np.random.Generator, cells: int, amount: float) -> np.ndarray:
  """Smooth multiplicative texture 1 + amount * noise with about `cells` blobs a side."""
  small = rng.standard_normal((cells, cells)).astype(np.float32)
  big = Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC)
  return 1 + amount * np.asarray(big)


_NOISE_BANK: list[np.ndarray] = []


def noise(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
  """Unit Gaussian noise: a random window of a fixed 1024 x 1024 bank (much faster than fresh normals per image)."""
  if not _NOISE_BANK:
    _NOISE_BANK.append(np.random.default_rng(20240101).standard_normal((1024, 1024), dtype=np.float32))
  bank = _NOISE_BANK[0] if rng.random() < 0.5 else _NOISE_BANK[0].T
  y, x = rng.integers(0, 1024 - h + 1), rng.integers(0, 1024 - w + 1)
  return bank[y:y + h, x:x + w]


_FONTS: dict[int, ImageFont.FreeTypeFont] = {}


def _font(size: int):
  if size not in _FONTS:
    _FONTS[size] = ImageFont.load_default(size=size)
  return _FONTS[size]


def markers(img8: Image.Image, rng: np.random.Generator, side_letter: str, style: MarkerStyle, tag: str) -> None:
  """Burned-in annotations in a `visit.MarkerStyle`: the bright L/R lead marker in the visit's corner (placed by hand,
  so its exact spot varies per view) and the view tag `tag` if the style has one (present in both classes)."""
  w, h = img8.size
  draw = ImageDraw.Draw(img8)
  if style.side_marker:
    size = int(min(w, h) * style.size) + 6
    x = w - rng.uniform(0.08, 0.2) * w if style.right else rng.uniform(0.03, 0.12) * w
    y = h - rng.uniform(0.1, 0.2) * h if style.bottom else rng.uniform(0.03, 0.12) * h
    if style.boxed:
      draw.rectangle([x - size * 0.2, y - size * 0.1, x + size * 0.9, y + size * 1.2], outline=style.grey,
                     width=max(1, size // 10))
    draw.text((x, y), side_letter, fill=style.grey, font=_font(size))
  if style.view_tag:
    size = int(min(w, h) * style.tag_size) + 5
    x = rng.uniform(0.05, 0.6) * w
    y = (rng.uniform(0.88, 0.94) if style.tag_bottom else rng.uniform(0.02, 0.08)) * h
    draw.text((x, y), tag, fill=style.tag_grey, font=_font(size))


def collimate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Shutter edges: outside a slightly rotated rectangle the film is uniformly dark or light."""
  h, w = img.shape
  if rng.random() < 0.45:
    return img
  m = rng.uniform(0.0, 0.12, size=4)
  theta = rng.normal(0, 0.05)
  gy, gx = np.ogrid[0:h, 0:w]
  x = (gx - w / 2) * math.cos(theta) + (gy - h / 2) * math.sin(theta)
  y = -(gx - w / 2) * math.sin(theta) + (gy - h / 2) * math.cos(theta)
  inside = (x > -w / 2 + m[0] * w) & (x < w / 2 - m[1] * w) & (y > -h / 2 + m[2] * h) & (y < h / 2 - m[3] * h)
  level = rng.uniform(0.0, 0.08) if rng.random() < 0.8 else rng.uniform(0.55, 0.85)
  return np.where(inside, img, np.float32(level))
