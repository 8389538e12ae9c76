"""What can be filmed: target families with their look-alikes, and the backgrounds and occluder surfaces."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lib.data.embedded.assets import RGBA, coin, lfw_face, logo, photo_crop, recoloured, textured_horse

MakeSprite = Callable[[np.random.Generator], tuple[RGBA, object]]
MakeLookalike = Callable[[np.random.Generator, object], tuple[RGBA, str]]


@dataclass(frozen=True)
class ObjectKind:
    """A target family: how to cut one instance and a look-alike (second instance or similar object).

    ``make`` returns the sprite and a token (which coin, face or eye it is) that ``lookalike`` gets, so the
    look-alike can be a different instance.
    """

    name: str
    object_class: str
    major_class: str
    root_class: str
    make: MakeSprite
    lookalike: MakeLookalike


def _fixed(name: str, box: tuple[int, int, int, int], shape: str = "ellipse") -> MakeSprite:
    return lambda rng: (photo_crop(name, box, shape), None)


def _same_recoloured(kind_make: MakeSprite, label: str) -> MakeLookalike:
    return lambda rng, _: (recoloured(kind_make(rng)[0], rng), label)


_CAT_EYES = {"left": (128, 75, 215, 155), "right": (280, 100, 356, 172)}
_ASTRONAUT_FACE = ("astronaut", (150, 15, 300, 175))
_GRACE_HEAD = ("grace_hopper", (150, 20, 378, 335))
_ROCKET = ("rocket", (298, 122, 347, 410), "rect")
_SHUTTLE_MODEL = ("astronaut", (352, 0, 470, 275), "rect")


def _cat_eye(rng: np.random.Generator) -> tuple[RGBA, object]:
    side = "left" if rng.random() < 0.5 else "right"
    return photo_crop("chelsea", _CAT_EYES[side]), side


def _horse_lookalike(rng: np.random.Generator, _: object) -> tuple[RGBA, str]:
    sprite, surface = textured_horse(rng)
    return (sprite[:, ::-1].copy() if rng.random() < 0.5 else sprite), f"another horse ({surface})"


def _face_lookalike(rng: np.random.Generator, _: object) -> tuple[RGBA, str]:
    choice = int(rng.integers(3))
    if choice == 0:
        return photo_crop(*_ASTRONAUT_FACE), "another face (astronaut)"
    if choice == 1:
        return photo_crop(*_GRACE_HEAD), "another face (grace hopper)"
    return lfw_face(rng)[0], "another face (lfw)"


def _rocket_lookalike(rng: np.random.Generator, _: object) -> tuple[RGBA, str]:
    if rng.random() < 0.5:
        return photo_crop(*_SHUTTLE_MODEL), "a space shuttle model"
    return recoloured(photo_crop(*_ROCKET), rng, flip=False), "a second rocket"


OBJECT_KINDS: tuple[ObjectKind, ...] = (
    ObjectKind("astronaut face", "human face", "person", "person", _fixed(*_ASTRONAUT_FACE), _face_lookalike),
    ObjectKind("grace hopper head", "human face", "person", "person", _fixed(*_GRACE_HEAD), _face_lookalike),
    ObjectKind("lfw face", "human face", "person", "person", lfw_face,
               lambda rng, index: (lfw_face(rng, exclude=index)[0], "another face (lfw)")),
    ObjectKind("cat face", "cat face", "cat", "animal", _fixed("chelsea", (55, 10, 405, 300)),
               _same_recoloured(_fixed("chelsea", (55, 10, 405, 300)), "a second cat face")),
    ObjectKind("cat eye", "cat eye", "cat", "animal", _cat_eye,
               lambda rng, side: (photo_crop("chelsea", _CAT_EYES["right" if side == "left" else "left"]),
                                  "the cat's other eye")),
    ObjectKind("coffee cup", "cup", "tableware", "artifact", _fixed("coffee", (75, 15, 485, 395)),
               _same_recoloured(_fixed("coffee", (75, 15, 485, 395)), "a second cup")),
    ObjectKind("rocket", "rocket", "vehicle", "artifact", _fixed(*_ROCKET), _rocket_lookalike),
    ObjectKind("space shuttle model", "spacecraft model", "vehicle", "artifact", _fixed(*_SHUTTLE_MODEL),
               lambda rng, _: (photo_crop(*_ROCKET), "a rocket")),
    ObjectKind("mission patch", "badge", "insignia", "artifact", _fixed("astronaut", (130, 343, 216, 429)),
               lambda rng, _: (coin(rng)[0], "a coin")),
    ObjectKind("coin", "coin", "money", "artifact", coin,
               lambda rng, index: (coin(rng, exclude=index)[0], "another coin")),
    ObjectKind("logo", "logo", "sign", "artifact", lambda rng: (logo(rng), None),
               lambda rng, _: (logo(rng, hue_shift=True), "the logo in other colours")),
    ObjectKind("horse", "horse", "horse", "animal", textured_horse, _horse_lookalike),
)

# (image, kind); gray textures are tinted per sequence.
BACKGROUNDS: tuple[tuple[str, str], ...] = (
    ("hubble_deep_field", "photo"), ("coffee", "photo"), ("rocket", "photo"), ("chelsea", "photo"),
    ("astronaut", "photo"), ("grace_hopper", "photo"), ("immunohistochemistry", "photo"), ("retina", "photo"),
    ("stereo_motorcycle", "photo"), ("brick", "texture"), ("grass", "texture"), ("gravel", "texture"),
    ("moon", "texture"), ("camera", "texture"),
)
# Occluder surfaces: no faces or eyes, which would hand the tracker a look-alike exactly where the target hides.
OCCLUDER_SURFACES = tuple(entry for entry in BACKGROUNDS if entry[0] not in ("astronaut", "grace_hopper", "chelsea"))
TEXTURE_TINTS = {"brick": (1.0, 0.62, 0.5), "grass": (0.6, 0.95, 0.45), "gravel": (0.9, 0.85, 0.75),
                 "moon": (0.9, 0.9, 0.95), "camera": (0.95, 0.9, 0.85)}
