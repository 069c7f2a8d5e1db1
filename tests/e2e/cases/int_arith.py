INPUTS = {"i": ("i32", [4, 17]), "j": ("i32", [17]), "k": ("i64", [4, 1])}


def reference(params, inputs):
    i, j, k = inputs["i"], inputs["j"], inputs["k"]
    return {"add": i + j, "sub": i - j * 3, "mul": i * j, "neg": -i, "absv": i.abs(),
            "k_scaled": k * 1000000000 + 7, "k_bcast": k - k * k}
