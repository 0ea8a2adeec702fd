"""kdist export's safetensors file, read by Python's safetensors, against the checkpoint.

usage: safetensors_test.py CHECKPOINT_DIR FILE.safetensors

The checkpoint is read here on its own (metadata.json and the shard files, each chunk's
CRC-32 checked), so the comparison does not go through kdist's reader: every module tensor
of the checkpoint is in the file under its torch name, with its shape, dtype and exact
values, and nothing else is (no optimizer state).
"""
import json
import sys
import zlib

import numpy as np
from safetensors import safe_open

DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
          "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


def checkpoint_tensors(directory):
    with open(f"{directory}/metadata.json") as f:
        metadata = json.load(f)
    assert metadata["format"] == "kdist-checkpoint", metadata.get("format")
    tensors = {}
    for name, record in metadata["tensors"].items():
        if name.startswith("optimizer/"):
            continue
        dtype = DTYPES[record["dtype"]]
        whole = np.zeros(record["shape"], dtype=dtype)
        for chunk in record["chunks"]:
            with open(f"{directory}/{chunk['file']}", "rb") as f:
                f.seek(chunk["byte_offset"])
                data = f.read(chunk["byte_length"])
            assert zlib.crc32(data) == chunk["crc32"], f"{name}: checksum"
            block = np.frombuffer(data, dtype=dtype).reshape(chunk["sizes"])
            where = tuple(slice(o, o + s) for o, s in zip(chunk["offsets"], chunk["sizes"]))
            whole[where] = block
        tensors[name] = whole
    return tensors


def main(directory, path):
    want = checkpoint_tensors(directory)
    with safe_open(path, framework="np") as f:
        assert f.metadata() == {"format": "pt"}, f.metadata()
        names = set(f.keys())
        assert names == set(want), f"names differ: only in the file {sorted(names - set(want))}, " \
                                   f"only in the checkpoint {sorted(set(want) - names)}"
        for name in sorted(names):
            got = f.get_tensor(name)
            assert got.shape == want[name].shape, f"{name}: shape {got.shape}, expected {want[name].shape}"
            assert got.dtype == want[name].dtype, f"{name}: dtype {got.dtype}, expected {want[name].dtype}"
            assert np.array_equal(got, want[name]), f"{name}: values differ"
    print(f"PASS: {len(names)} tensors of {directory} in {path}, names, shapes, dtypes and values equal")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
