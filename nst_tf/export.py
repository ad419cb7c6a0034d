"""The one base of every SavedModel nst_tf writes (the optimisation's, a network's, the universal
painter's): version folders, request limits, staging, permissions and the atomic rename.

TensorFlow is imported only by `save`, so the command line checks versions and limits before it
loads anything.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, NamedTuple, Optional

from nst_tf import files
from nst_tf.errors import NstError

# The exporter's record of what it wrote (settings, limits, versions), beside the SavedModel.
METADATA_FILE = "nst_tf.json"


class Limits(NamedTuple):
    """What one request to an exported model may ask for; checked in the graph, recorded in the metadata.

    max_pixels: output pixels (height x width at the requested size), and the style image's.
    max_steps: steps per scale (the optimisation's export).
    max_input_pixels: pixels of an encoded input, read from its header before it is decoded.
    """

    max_pixels: int = 1024 * 1024
    max_steps: int = 1000
    max_input_pixels: int = 25_000_000

    def check(self) -> "Limits":
        for name, value in self._asdict().items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise NstError(f"{name} must be a positive integer, got {value!r}")
        return self


def version_path(export_dir: str, version, overwrite: bool = False) -> str:
    """`<export_dir>/<version>`, the SavedModel's version folder (TF Serving serves the highest);
    an `NstError` for a version that is not a positive integer, or one that exists unless
    `overwrite`."""
    if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
        raise NstError(f"version must be a positive integer (TF Serving's version folder), got {version!r}")
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final) and not overwrite:
        raise NstError(f"{final} already exists; choose another --version or pass --overwrite")
    return final


def save(
    module,
    export_dir: str,
    version: int,
    signatures: Mapping,
    metadata: Optional[dict] = None,
    overwrite: bool = False,
) -> str:
    """Writes `module` (a `tf.Module`) with `signatures` as `<export_dir>/<version>/`, and `metadata`
    as `assets.extra/nst_tf.json`: staged beside the final folder, readable by a model server running
    as another user, renamed into place (a server watching `export_dir` never sees half an export).
    Returns the version folder."""
    import tensorflow as tf

    final = version_path(export_dir, version, overwrite)

    def write(staging):
        tf.saved_model.save(module, staging, signatures=dict(signatures))
        if metadata is not None:
            os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
            with open(os.path.join(staging, "assets.extra", METADATA_FILE), "w") as f:
                json.dump(metadata, f, indent=2, sort_keys=True)

    return files.write_folder(final, write, overwrite)
