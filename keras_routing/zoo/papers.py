"""The papers the zoo's models come from: file names under ``../shared/papers/``, or citations
for the baselines' original papers."""

CONDCONV = "condconv-soft-conditional-computation.md"
MOBILENET_V1 = "Howard et al. 2017, MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications, arXiv:1704.04861"
MOBILENET_V2 = "Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks, arXiv:1801.04381"
RESNET = "He et al. 2016, Deep Residual Learning for Image Recognition, arXiv:1512.03385"
PROBABILISTIC_GATES = "probabilistic-gates.md"
