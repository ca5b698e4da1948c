#!/usr/bin/python3
"""Generate the ONNX fixtures of package model/onnx.

Run from this directory with Debian's python3-onnx (1.12.0) and numpy:

    apt-get install python3-onnx python3-numpy
    /usr/bin/python3 gen.py

(The python3 of a pyenv on PATH does not see Debian's packages.)

It builds small feed-forward graphs with onnx.helper, random weights from a
fixed seed, checks them with onnx.checker and writes for each <name>.onnx,
the model, and <name>.expected.json: the test inputs, one list of features
per row, and the reference outputs, one list per row. ONNX 1.12 has no
reference evaluator, so the outputs come from a small numpy evaluator below,
in float64, that reads the graph back from the file written: its
initializers, nodes and attributes. The output is deterministic.
"""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROWS = 20  # test rows of each fixture


def weights(rng, *shape, scale=None):
    """Random float32 weights, about unit-variance outputs."""
    if scale is None:
        scale = 1 / np.sqrt(shape[0] if len(shape) > 1 else 1)
    return (rng.normal(size=shape) * scale).astype(np.float32)


def init(name, array, raw=True):
    """An initializer: raw_data (what numpy_helper writes) or float_data."""
    if raw:
        return numpy_helper.from_array(array, name)
    return helper.make_tensor(name, TensorProto.FLOAT, array.shape, array.flatten().tolist())


def test_inputs(rng, shape):
    """ROWS rows: random ones, a row of zeros and a row of large values."""
    x = (rng.normal(size=(ROWS,) + shape) * 1.5).astype(np.float32)
    x[-2] = 0
    x[-1] = np.sign(x[-1]) * 8
    return x


# The numpy evaluator: float64, the semantics of the ONNX operators.

def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def evaluate(model, x):
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    g = model.graph
    env = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in env]
    assert len(inputs) == 1
    env[inputs[0]] = x.astype(np.float64)
    for n in g.node:
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        i = [env[name] if name else None for name in n.input]
        op = n.op_type
        if op == "Gemm":
            A = i[0].T if a.get("transA", 0) else i[0]
            B = i[1].T if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(i) > 2 and i[2] is not None:
                y = y + a.get("beta", 1.0) * i[2]
        elif op == "MatMul":
            y = np.matmul(i[0], i[1])
        elif op == "Add":
            y = i[0] + i[1]
        elif op == "Sub":
            y = i[0] - i[1]
        elif op == "Mul":
            y = i[0] * i[1]
        elif op == "Relu":
            y = np.maximum(i[0], 0)
        elif op == "LeakyRelu":
            y = np.where(i[0] < 0, i[0] * a.get("alpha", 0.01), i[0])
        elif op == "Sigmoid":
            y = 1 / (1 + np.exp(-i[0]))
        elif op == "Tanh":
            y = np.tanh(i[0])
        elif op == "Softmax":
            x0 = i[0]
            if opset >= 13:
                y = softmax(x0, a.get("axis", -1))
            else:
                ax = a.get("axis", 1) % x0.ndim
                flat = x0.reshape(int(np.prod(x0.shape[:ax])), -1)
                y = softmax(flat, 1).reshape(x0.shape)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)
        elif op == "Identity":
            y = i[0]
        elif op == "BatchNormalization":
            x0, scale, b, mean, var = i
            shape = (1, -1) + (1,) * (x0.ndim - 2)
            r = lambda v: v.reshape(shape)
            y = (x0 - r(mean)) / np.sqrt(r(var) + a.get("epsilon", 1e-5)) * r(scale) + r(b)
        elif op == "Concat":
            y = np.concatenate(i, axis=a["axis"])
        else:
            raise ValueError("no reference for " + op)
        env[n.output[0]] = y
    return env[g.output[0].name]


def write(name, graph, opset, rng, input_shape):
    model = helper.make_model(graph, producer_name="quiver gen.py",
                              opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, name + ".onnx")
    model = onnx.load(name + ".onnx")
    x = test_inputs(rng, input_shape)
    y = evaluate(model, x)
    with open(name + ".expected.json", "w") as f:
        json.dump({
            "onnx": onnx.__version__,
            "opset": opset,
            "inputs": [[float(v) for v in row.flatten()] for row in x],
            "outputs": [[float(v) for v in row.flatten()] for row in y],
        }, f, separators=(",", ":"))
        f.write("\n")


def gemm_relu_sigmoid():
    """Two Gemm layers, the first with transB (PyTorch's Linear), the second
    with alpha, beta and a C of shape [1, 3]; a symbolic batch dimension."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2", "c2"], ["h2"], name="fc2", alpha=0.5, beta=2.0),
        helper.make_node("Sigmoid", ["h2"], ["y"], name="sigmoid"),
    ]
    inits = [init("w1", weights(rng, 16, 10, scale=0.4)), init("b1", weights(rng, 16, scale=0.1)),
             init("w2", weights(rng, 16, 3)), init("c2", weights(rng, 1, 3, scale=0.2))]
    graph = helper.make_graph(nodes, "gemm_relu_sigmoid",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], inits)
    write("gemm_relu_sigmoid", graph, 13, rng, (10,))


def matmul_tanh_bn_softmax():
    """MatMul and Add layers (the second bias on the left of its Add), Tanh,
    BatchNormalization with epsilon, Softmax over the last axis (opset 13).
    The weights are in float_data, and the initializers are listed among the
    graph's inputs too, as IR version 3 wanted."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Tanh", ["a1"], ["t1"], name="tanh"),
        helper.make_node("BatchNormalization", ["t1", "scale", "shift", "mean", "var"], ["bn"],
                         name="bn", epsilon=1e-3),
        helper.make_node("MatMul", ["bn", "w2"], ["m2"], name="mm2"),
        helper.make_node("Add", ["b2", "m2"], ["a2"], name="bias2"),
        helper.make_node("Softmax", ["a2"], ["y"], name="softmax", axis=-1),
    ]
    arrays = {
        "w1": weights(rng, 8, 12), "b1": weights(rng, 12, scale=0.3),
        "scale": (1 + weights(rng, 12, scale=0.2)), "shift": weights(rng, 12, scale=0.2),
        "mean": weights(rng, 12, scale=0.3), "var": (0.2 + rng.random(12)).astype(np.float32),
        "w2": weights(rng, 12, 5, scale=0.8), "b2": weights(rng, 1, 5, scale=0.3),
    }
    inits = [init(k, v, raw=False) for k, v in arrays.items()]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])]
    inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in arrays.items()]
    graph = helper.make_graph(nodes, "matmul_tanh_bn_softmax", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    write("matmul_tanh_bn_softmax", graph, 13, rng, (8,))


def mixed():
    """A fixed batch dimension and opset 11 (Softmax's older semantics):
    Flatten, Gemm without transB, LeakyRelu, Mul by a [1, 8] row, Sub from a
    scalar, Sub of two values, an Add whose broadcast widens [N, 1] to
    [N, 3], Concat of five values among them the input, Identity of a value
    and of an initializer, a Gemm without C, and a node the output does not
    need."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "w1", "c1"], ["g"], name="fc1", alpha=1.5, beta=0.5),
        helper.make_node("LeakyRelu", ["g"], ["l"], name="leaky", alpha=0.1),
        helper.make_node("Mul", ["l", "s"], ["p"], name="scale"),
        helper.make_node("Sub", ["c0", "l"], ["q"], name="flip"),
        helper.make_node("Sub", ["p", "q"], ["d"], name="diff"),
        helper.make_node("MatMul", ["x", "w3"], ["u"], name="proj"),
        helper.make_node("Add", ["u", "v3"], ["u3"], name="widen"),
        helper.make_node("Tanh", ["l"], ["unused"], name="dead"),
        helper.make_node("Concat", ["p", "q", "d", "u3", "x"], ["cat"], name="concat", axis=1),
        helper.make_node("Identity", ["cat"], ["cat2"], name="same"),
        helper.make_node("Identity", ["w4"], ["w4i"], name="tied"),
        helper.make_node("Gemm", ["cat2", "w4i"], ["z"], name="fc2", transB=1),
        helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=1),
    ]
    inits = [init("w1", weights(rng, 6, 8)), init("c1", weights(rng, 8, scale=0.3)),
             init("s", weights(rng, 1, 8, scale=1.0)), init("c0", np.array(0.25, dtype=np.float32)),
             init("w3", weights(rng, 6, 1)), init("v3", weights(rng, 3, scale=0.5)),
             init("w4", weights(rng, 4, 33, scale=0.25))]
    graph = helper.make_graph(nodes, "mixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [ROWS, 4])], inits)
    write("mixed", graph, 11, rng, (6,))


def rank3():
    """An input of shape [N, 3, 4]: BatchNormalization over 3 channels of 4,
    a MatMul of each [3, 4] matrix, a bias of shape [5], Relu, Softmax over
    axis 1 (opset 13: the 3 elements at each place), then Flatten and Gemm."""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "scale", "shift", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("MatMul", ["bn", "w1"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b1"], ["a"], name="bias"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Softmax", ["r"], ["s"], name="softmax", axis=1),
        helper.make_node("Flatten", ["s"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc"),
    ]
    inits = [init("scale", 1 + weights(rng, 3, scale=0.2)), init("shift", weights(rng, 3, scale=0.2)),
             init("mean", weights(rng, 3, scale=0.3)), init("var", (0.5 + rng.random(3)).astype(np.float32)),
             init("w1", weights(rng, 4, 5)), init("b1", weights(rng, 5, scale=0.3)),
             init("w2", weights(rng, 15, 2, scale=1.0)), init("b2", weights(rng, 2, scale=0.3))]
    graph = helper.make_graph(nodes, "rank3",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    write("rank3", graph, 13, rng, (3, 4))


if __name__ == "__main__":
    gemm_relu_sigmoid()
    matmul_tanh_bn_softmax()
    mixed()
    rank3()
