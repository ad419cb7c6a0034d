"""Feed-forward style networks: a style transform network driven by a style embedding from a
learned table of fixed styles or from the predict head, trained by nst_tf's own objective
(`train`), used in one forward pass (`use`), exported for TF Serving and TF Lite (`export`)."""

from nst_tf.networks.models import StyleNetwork, build_transform, style_statistics  # noqa: F401
from nst_tf.networks.train import TrainConfig, train_network  # noqa: F401
from nst_tf.networks.use import Painter, load_network, paint  # noqa: F401
