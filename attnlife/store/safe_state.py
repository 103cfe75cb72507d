"""A pickle-free format for nested training state (optimizer moments, RNG states, counters).

`encode_state(obj)` splits a nested structure into a JSON tree and a flat dict of tensors;
`decode_state(tree, tensors)` inverts it exactly. On disk: the tree as JSON, the tensors as one
safetensors file, so loading a state someone else wrote never runs code.

Encoded forms (everything else JSON-native: str, int, float incl. NaN/inf, bool, None):
- torch.Tensor   -> {"__tensor__": name}                   (name keys the safetensors file)
- numpy.ndarray  -> {"__ndarray__": name, "dtype": "uint32"} (stored as a tensor, cast back)
- tuple          -> {"__tuple__": [items]}
- dict with non-str keys, or a key starting "__" -> {"__items__": [[key, value], ...]}
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

_WIDEN_TO_INT64 = {"uint16", "uint32"}  # numpy dtypes safetensors/torch cannot hold as such


class StateFormatError(ValueError):
    """A state tree that this format cannot hold (on write) or that is malformed (on read)."""


def encode_state(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """(JSON-serialisable tree, {name: contiguous CPU tensor}) for a nested state `obj`."""
    tensors: dict[str, torch.Tensor] = {}
    return _encode(obj, tensors), tensors


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        name = f"t{len(tensors)}"
        array = obj.astype(np.int64) if obj.dtype.name in _WIDEN_TO_INT64 else obj
        tensors[name] = torch.from_numpy(np.ascontiguousarray(array)).clone()
        return {"__ndarray__": name, "dtype": obj.dtype.name}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    raise StateFormatError(f"cannot store a {type(obj).__name__} in trainer state; use tensors, "
                           f"numbers, strings, lists, tuples and dicts")


def decode_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `encode_state`; raises StateFormatError on a malformed tree."""
    if isinstance(tree, list):
        return [decode_state(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        if isinstance(tree, (str, bool, int, float)) or tree is None:
            return tree
        raise StateFormatError(f"unexpected {type(tree).__name__} in state tree")
    try:
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__ndarray__" in tree:
            return tensors[tree["__ndarray__"]].numpy().astype(np.dtype(tree["dtype"]))
        if "__tuple__" in tree:
            return tuple(decode_state(v, tensors) for v in tree["__tuple__"])
        if "__items__" in tree:
            return {_hashable(decode_state(k, tensors)): decode_state(v, tensors)
                    for k, v in tree["__items__"]}
    except (KeyError, TypeError, ValueError) as err:
        raise StateFormatError(f"malformed state entry ({type(err).__name__}: {err})") from None
    return {k: decode_state(v, tensors) for k, v in tree.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, float) and math.isnan(key):
        raise StateFormatError("NaN dict key in state tree")
    return key
