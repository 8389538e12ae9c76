"""Embedded tracking benchmark: realistic sequences generated from images that ship inside installed packages.

A fresh machine has no LaSOT, no GOT-10k and no network, yet the demo must train and evaluate trackers. This
package pastes real objects (crops of scikit-image's astronaut, chelsea, coffee and rocket photos, segmented
coins, the logo, the horse silhouette filled with a real texture, LFW faces, matplotlib's Grace Hopper) onto
real or textured backgrounds (photos, Hubble deep field, brick/grass/gravel textures) and films them with a
moving camera: smooth pan and zoom, object motion with scale, aspect-ratio and small rotation changes,
occluders that hide the object partly or fully, look-alike distractors moving nearby, illumination change,
motion blur and sensor noise. The ground truth is exact: the tight box of the pasted object's mask after its
transform, clipped to the image (it still marks the object while an occluder hides it; ``absence.label`` and
``cover.label`` say how much of it is visible).

The result is written in the GOT-10k layout (``<root>/{train,val,test}/<Seq>/00000001.jpg``, ``groundtruth.txt``,
``absence.label``, ``cover.label``, ``cut_by_image.label``, ``meta_info.ini``, ``list.txt``) so the regular
loaders read it. **Unlike the official GOT-10k test split, our test split carries the boxes of every frame**:
it is evaluated locally, not by a server.

Every sequence is drawn from its own ``numpy`` generator seeded by (seed, split, index), so the same parameters
give byte-identical files and adding sequences to one split leaves the others unchanged. Keep generated frames
out of git.

Modules, from the bottom up: :mod:`.params` (parameters, splits, random streams), :mod:`.assets` (bundled images
and sprites, with their licences), :mod:`.catalog` (target kinds, backgrounds), :mod:`.motion` (paths and posed
layers), :mod:`.scene` (every random choice of a sequence), :mod:`.rendering` (frames and labels),
:mod:`.writer` (one sequence on disk) and :mod:`.cache` (generate, publish atomically, reuse).
"""
from lib.data.embedded.cache import embedded_root, ensure_embedded_benchmark, generate_embedded_benchmark, is_complete
from lib.data.embedded.params import MANIFEST_NAME, SPLITS, EmbeddedParams, sequence_name, sequence_rng
from lib.data.embedded.rendering import RenderedSequence, render_sequence

__all__ = ["MANIFEST_NAME", "SPLITS", "EmbeddedParams", "RenderedSequence", "embedded_root",
           "ensure_embedded_benchmark", "generate_embedded_benchmark", "is_complete", "render_sequence",
           "sequence_name", "sequence_rng"]
