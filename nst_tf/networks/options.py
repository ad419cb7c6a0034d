"""What a training run is (`TrainConfig`) and the exports' choices: no TensorFlow here, so the
command line can define its flags and check them before TensorFlow loads."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

from nst_tf.config import Objective, option
from nst_tf.errors import NstError
from nst_tf.image_io import MIN_SIDE  # noqa: F401  (re-exported) below it the first 9x9 conv's padding cannot form

QUANTIZATIONS = ("float32", "float16", "int8")  # TF Lite weights

MODES = ("table", "predict", "decoder", "arbitrary")
STARTS = ("arbitrary", "scratch")  # arbitrary mode: the published weights, or a fresh transform and projection
# The networks shipped with the package (nst_tf/assets/networks/<file>; docs/networks.md):
# "arbitrary" is Magenta's arbitrary style network with its published weights
# (`nst_tf.networks.arbitrary`); "demo" names the default one-pass painter, the arbitrary network
# since it measured best on the tuning paintings (docs/networks.md); "universal" paints any painting
# with `nst_tf.networks.universal`'s decoders; "three_styles" is the predict network trained on the
# three bundled paintings.
BUNDLED_NAMES = {
    "universal": "universal.keras",
    "demo": "arbitrary.npz",
    "three_styles": "three_styles.keras",
    "arbitrary": "arbitrary.npz",  # int8 kernels with their scales, as released: lossless (`models.save_packed`)
}
BUNDLED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "networks")


def network_path(spec: str) -> str:
    """The file a network spec names: a bundled name's file, or the spec itself."""
    if spec in BUNDLED_NAMES:
        return os.path.join(BUNDLED_DIR, BUNDLED_NAMES[spec])
    return os.fspath(spec)


def bundled_network(name: str = "demo") -> str:
    """Path of a network shipped with the package (`BUNDLED_NAMES`)."""
    if name not in BUNDLED_NAMES:
        raise NstError(f"no bundled network {name!r}; the bundled ones: {', '.join(BUNDLED_NAMES)}")
    path = network_path(name)
    if not os.path.isfile(path):
        raise NstError(f"the bundled network {name!r} is missing from this installation ({path})")
    return path


def check_network_file(spec) -> str:
    """The file a network spec names, checked to be there and to be a .keras (zip) file: an
    `NstError` otherwise. No TensorFlow, so a command refuses a wrong --network at once."""
    import zipfile

    path = bundled_network(spec) if spec in BUNDLED_NAMES else os.fspath(spec)
    if not os.path.isfile(path):
        raise NstError(f"network {path}: no such file (a .keras file from nst-tf-train, or {', '.join(BUNDLED_NAMES)})")
    if not zipfile.is_zipfile(path):
        raise NstError(f"network {path}: not a .keras network file (nst-tf-train writes them)")
    return path


def runs_vgg(spec, adapt_steps: int = 0) -> bool:
    """Whether painting with the network `spec` runs VGG19 (so its precision is worth choosing):
    the universal painter's encoders always; Magenta's arbitrary network only when adapting
    (`adapt_steps`); a fixed-style or predict network never at its chosen precision. A loaded
    network (not a file name) is taken to run it."""
    if not isinstance(spec, (str, os.PathLike)) or spec == "(model)":
        return True
    if spec in ("demo", "arbitrary") or network_class(spec) == "ArbitraryNetwork":
        return adapt_steps > 0
    return is_universal_file(spec)


def network_class(spec) -> str:
    """The Keras class a network file holds ("UniversalNetwork", "ArbitraryNetwork", "StyleNetwork"),
    read from its config without TensorFlow; "" when it cannot be read (loading it will say why)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(network_path(spec)) as z:
            return str(json.loads(z.read("config.json")).get("class_name", ""))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return ""


def is_universal_file(spec: str) -> bool:
    """Whether a network spec names a universal painter's decoders (`network_class`)."""
    return network_class(spec) == "UniversalNetwork"


MAX_LEVEL = 5  # VGG19's relu5_1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a training run is. The loss options (layers, weights, style statistic, norms, VGG
    weights and pooling) are `objective`'s: the `Objective` group that a style-transfer run's
    `Config` has too. Precision and XLA are the run plan's (`train.train_network`'s `plan`).

    contents, styles: specs for `data.scan` (folders, globs, files, TFRecord shards).
    output: the network file (`.keras`) written at the end (and on Ctrl-C).
    mode: "table" (one learned embedding per style image: fixed styles), "predict" (the predict
        head: any style image), "decoder" (the universal painter's decoders, levels 1 to
        `levels`, trained to reconstruct the content photos: no style images), or "arbitrary"
        (Magenta's arbitrary network, `networks.arbitrary`: its transform and its predictor's
        1280 -> 100 projection, from `start`; the predictor's MobileNetV2 stays as published, as
        Ghiasi et al. kept their ImageNet-trained predictor's features).
    start: arbitrary mode: "arbitrary" (fine-tune the published weights), "scratch" (a fresh transform
        and projection on the published MobileNetV2), or an arbitrary network's file to go on from.
    size, style_size: training crop sides; batch_size: images per step (across all devices).
    alpha: the transform network's width multiplier.
    held_out: content images kept out of training, styled for TensorBoard and the final report.
    """

    contents: Tuple[str, ...] = option(
        (), "Content photos: folders, globs, files or .tfrecord shards, comma-separated."
    )
    styles: Tuple[str, ...] = option((), "Style images: folders, globs, files or .tfrecord shards, comma-separated.")
    output: str = option("network.keras", "The network file written at the end (and on Ctrl-C).")
    objective: Objective = Objective()
    mode: str = option(
        "table",
        "table: one learned embedding per style image; predict: any style image; decoder: the universal "
        "painter's decoders (photos only, no --styles); arbitrary: Magenta's arbitrary network (see --start).",
        MODES,
    )
    start: str = option(
        "arbitrary",
        "arbitrary mode: start from the published weights (arbitrary), a fresh transform and projection "
        "(scratch), or an arbitrary network's file.",
    )
    levels: int = option(4, "decoder mode: decoders for VGG19 levels relu1_1 .. relu<levels>_1.")
    feature_weight: float = option(0.5, "decoder mode: weight of the feature reconstruction term (pixel: 1).")
    steps: int = option(2000, "Training steps.")
    batch_size: int = option(4, "Images per step (across all devices).")
    size: int = option(256, "Side of the square content crops.")
    style_size: int = option(256, "Side of the square style crops.")
    learning_rate: Optional[float] = option(
        None,
        "Adam's learning rate (default: 1e-3; 1e-4 when fine-tuning the arbitrary network, whose "
        "published weights 1e-3 spoils within 3 steps).",
    )
    alpha: float = option(1.0, "Width multiplier of the transform network (0.5: a quarter of the weights).")
    seed: int = option(0, "Seed of the initial weights and of the data stream.")
    checkpoint_dir: Optional[str] = option(None, "Folder for checkpoints (and --resume).")
    checkpoint_every: int = option(200, "Steps between checkpoints.")
    resume: bool = option(False, "Continue from the latest checkpoint in --checkpoint_dir.")
    logdir: Optional[str] = option(None, "TensorBoard logs: losses and the held-out images painted.")
    log_every: int = option(50, "Steps between TensorBoard scalars.")
    held_out: Tuple[str, ...] = option((), "Content images kept out of training: TensorBoard and the report.")
    devices: int = option(1, "Split each batch across this many devices (GPUs, or logical CPU devices).")

    @property
    def rate(self) -> float:
        """Adam's learning rate: `learning_rate`, else 1e-4 to fine-tune published weights (measured: 1e-3
        turns the arbitrary network's pictures to two colours within 3 steps at 256 px; 1e-4 keeps
        them through 15), else 1e-3."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-4 if self.mode == "arbitrary" and self.start != "scratch" else 1e-3

    def __post_init__(self):
        if type(self.objective) is not Objective:  # (a Config is one too, by inheritance)
            raise NstError(
                f"objective must be an Objective (the loss options; a Config's .objective), got {type(self.objective).__name__}"
            )
        for name in ("steps", "batch_size", "size", "style_size", "checkpoint_every", "log_every", "devices", "levels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise NstError(f"{name} must be a positive integer, got {value!r}")
        if not self.contents or (not self.styles and self.mode != "decoder"):
            raise NstError("contents and styles are required: folders, globs, files or .tfrecord shards")
        if self.mode == "decoder" and self.styles:
            raise NstError("decoder training reconstructs photos: it takes no styles")
        if not 1 <= self.levels <= MAX_LEVEL:
            raise NstError(f"levels must be 1 to {MAX_LEVEL}, got {self.levels}")
        if self.mode == "decoder" and self.size % 2 ** (self.levels - 1):
            raise NstError(
                f"size must be a multiple of {2 ** (self.levels - 1)} for decoders down to level {self.levels}"
            )
        if self.mode not in MODES:
            raise NstError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if self.mode != "arbitrary" and self.start != "arbitrary":
            raise NstError(f"start={self.start}: only arbitrary mode starts from a network (--mode=arbitrary)")
        if self.mode == "arbitrary" and self.alpha != 1.0:
            raise NstError("alpha: the arbitrary network's width is fixed (its transform is the published 0.25)")
        if self.mode == "arbitrary" and self.start not in STARTS and not os.path.isfile(network_path(self.start)):
            raise NstError(f"start={self.start}: no such network file (or {', '.join(STARTS)})")
        if self.size < MIN_SIDE or self.style_size < MIN_SIDE:
            raise NstError(f"size and style_size must be {MIN_SIDE} or more")
        if not self.rate > 0 or not self.alpha > 0 or self.feature_weight < 0:
            raise NstError("learning_rate and alpha must be positive, feature_weight not negative")
        if self.batch_size % self.devices:
            raise NstError(f"batch_size {self.batch_size} does not split across {self.devices} devices")
        if self.resume and not self.checkpoint_dir:
            raise NstError("resume needs checkpoint_dir, the folder the checkpoints are in")
        if not str(self.output).endswith(".keras"):
            raise NstError(f"output {self.output}: a network file ends in .keras")
