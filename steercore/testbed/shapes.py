"""The shapes world: one coloured shape on a dark 32×32 background, with a caption that describes it.

Every scene is a function of one integer seed, so images, captions and prompt lists are reproducible anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from steercore.core.errors import ConfigError

IMAGE_SIZE = 32
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
SIDES = ("left", "right")
RGB = {"red": (0.90, 0.12, 0.10), "green": (0.12, 0.80, 0.15), "blue": (0.15, 0.30, 0.95),
       "yellow": (0.95, 0.88, 0.12)}
#: Every word a shapes-world caption can contain, in a fixed order (tokenizers are built from it).
VOCABULARY = ("a", *SIZES, *COLOURS, *SHAPES, "on", "the", *SIDES)

# Half-extent r of a shape in pixels; "small"/"large" are said only where the size is unambiguous.
R_MIN, R_MAX, SMALL_MAX, LARGE_MIN = 5.0, 12.0, 7.0, 9.5
# Centre x below/above these is "left"/"right"; in between no side is said.
LEFT_MAX, RIGHT_MIN = 13.5, 18.5


@dataclass(frozen=True)
class Scene:
    """One shapes-world image: what is drawn, where, and on which background."""

    colour: str
    shape: str
    cx: float  # centre, pixels from the left edge
    cy: float  # centre, pixels from the top edge
    r: float  # half-extent in pixels (circle radius, half the square's side, triangle circumradius)
    background: float  # grey level in [0, 1] of the dark background
    rgb: tuple[float, float, float]  # the colour as drawn (slightly jittered)

    @property
    def size_word(self) -> str | None:
        return "small" if self.r <= SMALL_MAX else "large" if self.r >= LARGE_MIN else None

    @property
    def side_word(self) -> str | None:
        return "left" if self.cx <= LEFT_MAX else "right" if self.cx >= RIGHT_MIN else None

    def caption(self, rng: np.random.Generator | None = None, p_optional: float = 0.5) -> str:
        """'a red circle', optionally with a size word and 'on the left/right' (each said with p_optional)."""
        say = (lambda: rng.random() < p_optional) if rng is not None else (lambda: False)
        words = ["a"]
        size, side = self.size_word, self.side_word
        if size and say():
            words.append(size)
        words += [self.colour, self.shape]
        if side and say():
            words += ["on", "the", side]
        return " ".join(words)


def sample_scene(rng: np.random.Generator, colour: str | None = None, shape: str | None = None) -> Scene:
    """Draw a scene; `colour`/`shape` fix those attributes, everything else is random."""
    colour = colour or COLOURS[rng.integers(len(COLOURS))]
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    r = float(rng.uniform(R_MIN, R_MAX))
    margin = 1.2 * r + 0.5  # keep the shape (a triangle's apex reaches 1.2 r) inside the frame
    cx, cy = (float(v) for v in rng.uniform(margin, IMAGE_SIZE - margin, size=2))
    rgb = tuple(float(np.clip(c + rng.uniform(-0.05, 0.05), 0, 1)) for c in RGB[colour])
    return Scene(colour, shape, cx, cy, r, float(rng.uniform(0.02, 0.12)), rgb)


def scene(seed: int) -> Scene:
    """The scene of a seed."""
    return sample_scene(np.random.default_rng(seed))


def shape_coverage(scenes: list[Scene]) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1] of each scene's shape, [N, H, W], from signed distances (1 px ramp)."""
    coords = torch.arange(IMAGE_SIZE, dtype=torch.float32) + 0.5
    y, x = torch.meshgrid(coords, coords, indexing="ij")  # (H, W)
    p = torch.tensor([[s.cx, s.cy, s.r] for s in scenes], dtype=torch.float32)
    dx = x - p[:, 0, None, None]  # (N, H, W)
    dy = y - p[:, 1, None, None]
    r = p[:, 2, None, None]
    circle = torch.sqrt(dx**2 + dy**2) - r
    square = torch.maximum(dx.abs(), dy.abs()) - 0.85 * r  # same area scale as the circle, roughly
    # Upward equilateral triangle with circumradius r: the three edge half-planes, outward normals.
    r = 1.2 * r  # a triangle covers less than a circle of the same radius
    half = 0.5 * r
    edge = 0.8660254 * dx
    triangle = torch.maximum(dy - half, torch.maximum(edge - 0.5 * dy - half, -edge - 0.5 * dy - half))
    sdf = {"circle": circle, "square": square, "triangle": triangle}
    kind = torch.tensor([SHAPES.index(s.shape) for s in scenes])
    stacked = torch.stack([sdf[name] for name in SHAPES], dim=1)  # (N, 3, H, W)
    d = stacked.gather(1, kind[:, None, None, None].expand(-1, 1, IMAGE_SIZE, IMAGE_SIZE))[:, 0]
    return (0.5 - d).clamp(0, 1)


def render(scenes: list[Scene]) -> torch.Tensor:
    """Images of the scenes as a float tensor [N, 3, 32, 32] in [-1, 1] (the diffusion model's range)."""
    cover = shape_coverage(scenes)[:, None]  # (N, 1, H, W)
    rgb = torch.tensor([s.rgb for s in scenes], dtype=torch.float32)[:, :, None, None]
    bg = torch.tensor([s.background for s in scenes], dtype=torch.float32)[:, None, None, None]
    img = cover * rgb + (1 - cover) * bg
    return img * 2 - 1


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[N, 3, H, W] in [-1, 1] → PIL RGB images."""
    arr = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arr]


def render_pil(seed: int) -> tuple[Image.Image, str]:
    """The image and full caption (with every applicable optional word) of a seed."""
    s = scene(seed)
    return to_pil(render([s]))[0], s.caption(np.random.default_rng(seed), p_optional=1.0)


def training_batch(rng: np.random.Generator, n: int, p_optional: float = 0.5) -> tuple[torch.Tensor, list[Scene],
                                                                                       list[str]]:
    """n random scenes: images [n, 3, 32, 32] in [-1, 1], the scenes, and captions with random optional words."""
    scenes = [sample_scene(rng) for _ in range(n)]
    return render(scenes), scenes, [s.caption(rng, p_optional) for s in scenes]


def _check_concept(concept: str) -> None:
    if concept not in COLOURS + SHAPES:
        raise ConfigError(f"shapes-world concept {concept!r} is unknown; use one of {', '.join(COLOURS + SHAPES)}")


def neutral_captions(n: int, seed: int) -> list[str]:
    """n captions of random scenes (every colour and shape), deterministic in (n, seed)."""
    rng = np.random.default_rng([seed, 0])
    return [sample_scene(rng).caption(rng) for _ in range(n)]


def concept_captions(concept: str, n: int, seed: int) -> list[str]:
    """n captions that all contain `concept` (a colour or a shape word); the other attributes are random."""
    _check_concept(concept)
    rng = np.random.default_rng([seed, 1])
    fixed = {"colour": concept} if concept in COLOURS else {"shape": concept}
    return [sample_scene(rng, **fixed).caption(rng) for _ in range(n)]


def gate_captions() -> list[str]:
    """The 12 'a {colour} {shape}' captions that the quality gates are measured on."""
    return [f"a {c} {s}" for c in COLOURS for s in SHAPES]


def caption_attributes(caption: str) -> dict[str, str]:
    """The attributes a caption states: any of colour, shape, size, side."""
    words = caption.lower().split()
    out = {}
    for key, values in (("colour", COLOURS), ("shape", SHAPES), ("size", SIZES), ("side", SIDES)):
        hit = [w for w in words if w in values]
        if hit:
            out[key] = hit[0]
    return out
