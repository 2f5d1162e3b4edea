"""Small member-run networks the tests share: an MLP with dropout and a one-conv-layer net, 28x28 inputs."""

MLP = {"layers": [
    {"type": "FullyConnectedLayer", "n_in": 784, "n_out": 20, "activation_fn": "sigmoid", "p_dropout": 0.3},
    {"type": "SoftmaxLayer", "n_in": 20, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
CONV = {"layers": [
    {"type": "ConvPoolLayer", "filter_shape": [2, 1, 5, 5], "image_shape": [10, 1, 28, 28],
     "poolsize": [2, 2], "activation_fn": "ReLU"},
    {"type": "FullyConnectedLayer", "n_in": 288, "n_out": 12, "activation_fn": "ReLU", "p_dropout": 0.5},
    {"type": "SoftmaxLayer", "n_in": 12, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
