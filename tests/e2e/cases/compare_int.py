INPUTS = {"i": ("i32", [5, 3]), "j": ("i32", [3]), "k": ("i64", [5, 3]), "u": ("u8", [5, 3])}


def reference(params, inputs):
    i, j, k, u = (inputs[n] for n in "ijku")
    return {"i_lt": i < j, "i_eq": i == 0, "k_ge": k >= 2, "k_ne": k != k,
            "u_gt": u > 128, "u_le": u <= u}
