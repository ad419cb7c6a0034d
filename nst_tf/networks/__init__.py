"""Feed-forward style networks: a style transform network driven by a style embedding from a
learned table of fixed styles or from the predict head, trained by nst_tf's own objective
(`train`), used in one forward pass (`use`), exported for TF Serving and TF Lite (`export`); and the
universal painter (`universal`, `wct`): any painting in one pass, from decoders trained on photos
only and the whitening and colouring transform. `options` holds no TensorFlow; the package's main
names are exported by `nst_tf` itself (`nst_tf.train_network`, `nst_tf.TrainConfig`,
`nst_tf.NetworkPainter`, `nst_tf.UniversalPainter`, `nst_tf.make_painter`, `nst_tf.load_network`,
`nst_tf.StyleNetwork`, `nst_tf.UniversalNetwork`)."""
