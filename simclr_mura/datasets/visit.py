"""What the films of one synthetic study share, because a real MURA study is one visit to one radiography room.

A MURA study is 1-11 radiographs of one body part of one patient taken at one sitting (MURA page,
https://stanfordmlgroup.github.io/competitions/mura/; Rajpurkar et al. 2017, arXiv 1712.06957). At one sitting the
same technologist, room and detector take every view, so the views share: the exposure technique and the display
window (with the small spread of re-positioning and automatic exposure control), the detector's size, the habit of
where the lead L/R marker goes and whether the view is tagged, and whatever the patient wears (a cast, a ring, a
garment with a snap). What changes from view to view (projection angle, centring, collimation, noise, the tag's
text) is drawn per image by `synthetic.render_image`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Tag texts a view may carry, by view index (1 = AP/PA, 2 = lateral, 3+ = obliques), as on real films.
VIEW_TAGS = {1: ("AP", "PA"), 2: ("LAT",), 3: ("OBL",)}
SHOULDER_VIEW_TAGS = {1: ("AP", "ER"), 2: ("Y", "LAT"), 3: ("IR", "AXIAL")}


@dataclasses.dataclass(frozen=True)
class Technique:
  """Exposure and display window of a film: how bright bone, soft tissue and background come out."""
  exposure: float  # attenuation scale (kVp/mAs)
  fog: float  # scatter fog added everywhere
  lo: float  # window: the value shown black
  hi: float  # window: the value shown white
  gamma: float  # display curve

  def varied(self, rng: np.random.Generator) -> "Technique":
    """The same technique on another view: a few per cent of exposure and window, as re-positioning gives."""
    return Technique(exposure=self.exposure * rng.uniform(0.96, 1.04), fog=max(0.0, self.fog + rng.uniform(-0.01, 0.01)),
                     lo=self.lo + rng.uniform(-0.015, 0.015), hi=self.hi + rng.uniform(-0.02, 0.02),
                     gamma=self.gamma * rng.uniform(0.97, 1.03))


@dataclasses.dataclass(frozen=True)
class MarkerStyle:
  """Where and how the technologist puts the lead L/R marker and the view tag."""
  side_marker: bool
  size: float  # of the marker, as a fraction of the film's short side
  right: bool  # the marker's corner
  bottom: bool
  boxed: bool
  grey: int
  view_tag: bool
  tag_size: float
  tag_bottom: bool
  tag_grey: int


@dataclasses.dataclass(frozen=True)
class Visit:
  """The traits every film of one study shares."""
  technique: Technique
  markers: MarkerStyle
  long_side: int  # the detector's long side in pixels (MURA's files: mostly 512)
  aspect: float  # short side / long side
  cast: bool  # a plaster cast over the part
  ring: float | None  # a ring on a finger: which finger bone (a fraction of the list), or None
  snap: bool  # a garment with a metal snap near the part


def draw_visit(study_type: str, rng: np.random.Generator) -> Visit:
  """The shared traits of one study, drawn once from the study's own generator."""
  technique = Technique(exposure=rng.uniform(0.6, 1.0), fog=rng.uniform(0.0, 0.08), lo=rng.uniform(-0.04, 0.12),
                        hi=rng.uniform(0.75, 1.05), gamma=rng.uniform(0.75, 1.35))
  markers = MarkerStyle(side_marker=bool(rng.random() < 0.75), size=rng.uniform(0.06, 0.12), right=bool(rng.random() < 0.5),
                        bottom=bool(rng.random() < 0.5), boxed=bool(rng.random() < 0.4), grey=int(rng.uniform(215, 255)),
                        view_tag=bool(rng.random() < 0.25), tag_size=rng.uniform(0.03, 0.05),
                        tag_bottom=bool(rng.random() < 0.5), tag_grey=int(rng.uniform(190, 250)))
  # film size like MURA's: mostly 512 px on the long side, some smaller, a few tiny
  u = rng.random()
  long_side = 512 if u < 0.7 else int(rng.uniform(300, 512)) if u < 0.97 else int(rng.uniform(90, 300))
  hand_like = study_type in ("hand", "finger")
  return Visit(technique=technique, markers=markers, long_side=long_side, aspect=rng.uniform(0.62, 1.0),
               cast=bool(rng.random() < 0.07), ring=float(rng.random()) if hand_like and rng.random() < 0.12 else None,
               snap=bool(rng.random() < 0.05))


def view_tag(study_type: str, index: int, rng: np.random.Generator) -> str:
  """The text a view's tag says: its projection (`index` 1 = AP/PA, 2 = lateral, 3+ = oblique)."""
  tags = (SHOULDER_VIEW_TAGS if study_type == "shoulder" else VIEW_TAGS)[min(index, 3)]
  return str(tags[rng.integers(len(tags))])
