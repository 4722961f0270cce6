import pytest
import torch

from mnistlab.errors import MnistlabError
from mnistlab.models import MODELS, create_model, describe, model_spec
from mnistlab.models.summary import count_params

# Parameter counts worked out by hand from each model's layer list (weights + biases).
EXPECTED_PARAMS = {
    "lenet5": (6 * 25 + 6) + (16 * 6 * 25 + 16) + (256 * 120 + 120) + (120 * 84 + 84)
    + (84 * 10 + 10),
    "pytorch-example": (32 * 9 + 32) + (64 * 32 * 9 + 64) + (9216 * 128 + 128) + (128 * 10 + 10),
    "mlp": (784 * 512 + 512) + (512 * 256 + 256) + (256 * 10 + 10),
    # Unpadded convolutions with biases, in * k * k * out + out each: 3x3 kernels, except
    # fullconv's last (2x2, on a 2x2 map). The tutorial these come from quotes 66,690 and
    # 75,280; the layer lists as given count these (README).
    "convnet-s2-small": (1 * 9 * 10 + 10) + (10 * 9 * 20 + 20) + (20 * 9 * 40 + 40)
    + (40 * 9 * 80 + 80) + (80 * 9 * 40 + 40) + (40 * 2 * 2 * 48 + 48) + (48 * 10 + 10),
    "fullconv": (1 * 9 * 6 + 6) + (6 * 9 * 12 + 12) + (12 * 9 * 24 + 24) + (24 * 9 * 48 + 48)
    + (48 * 9 * 96 + 96) + (96 * 4 * 48 + 48) + (48 * 10 + 10),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_maps_images_to_ten_logits(name):
    model = create_model(name).eval()
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    # Logits, not probabilities: some are negative and rows do not sum to 1.
    assert (out < 0).any()
    assert not torch.allclose(out.sum(1), torch.ones(3))


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_parameter_counts(name):
    assert count_params(create_model(name)) == EXPECTED_PARAMS[name]


def test_the_readme_parameter_counts_are_the_hand_counts():
    # the figures the README's zoo table prints, against the arithmetic above
    assert EXPECTED_PARAMS["convnet-s2-small"] == 75_098
    assert EXPECTED_PARAMS["fullconv"] == 74_290


@pytest.mark.parametrize("name, kernels, flat", [
    ("convnet-s2-small", [3, 3, 3, 3, 3], (40, 2, 2)),
    ("fullconv", [3, 3, 3, 3, 3, 2], (48, 1, 1)),
])
def test_the_layers_are_those_counted_by_hand(name, kernels, flat):
    model = create_model(name)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(k, k) for k in kernels]
    assert all(c.bias is not None and c.padding == (0, 0) for c in convs)
    last = [layer for layer in describe(model) if layer.kind == "Conv2d"][-1]
    assert last.output_shape == flat  # what the first Linear layer is counted on


def test_mlp_hidden_sizes_and_spec():
    model = create_model("mlp", hidden="128,64")
    assert count_params(model) == (784 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10)
    assert model_spec(model) == {"name": "mlp",
                                 "kwargs": {"hidden": "128,64", "activation": "relu"}}


def test_describe_lists_layers_with_shapes():
    layers = describe(create_model("lenet5"))
    assert [layer.output_shape for layer in layers if layer.kind == "Conv2d"] == [
        (6, 24, 24), (16, 8, 8)]
    assert sum(layer.params for layer in layers) == EXPECTED_PARAMS["lenet5"]


def test_unknown_model_and_argument():
    with pytest.raises(MnistlabError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(MnistlabError, match="takes no argument width"):
        create_model("lenet5", width=3)


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "gelu"}, "activation: unknown 'gelu'"),
    ({"hidden": "64,x"}, "hidden: expected layer sizes"),
    ({"hidden": "0"}, "at least 1"),
])
def test_bad_mlp_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(MnistlabError, match=message):
        create_model("mlp", **kwargs)
