"""Video: optical flow between frames, warping, the reliability mask of Ruder et al. (GCPR 2016), and
(next) decoding, the temporally consistent painters and encoding."""
