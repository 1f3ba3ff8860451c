"""Safe loading of fairseq checkpoints: legitimate content loads, code-running pickles are refused before they run."""

import argparse
import builtins
import os
import pickle
import subprocess
import sys
import types
import typing
import zipfile
from collections import OrderedDict, defaultdict

import numpy as np
import pytest
import torch

from omni_avsr.convert.fairseq_checkpoint import FairseqDictionary, UnsafeCheckpointError, load_fairseq_checkpoint


def _fake_class(module: types.ModuleType, name: str) -> type:
    """A class that pickles by reference as `module.name`, like the real fairseq/omegaconf class would."""
    cls = type(name, (), {})
    cls.__module__ = module.__name__
    cls.__qualname__ = name
    setattr(module, name, cls)
    return cls


@pytest.fixture
def fake_libraries(monkeypatch):
    """Minimal fake `fairseq` and `omegaconf` modules, only so that test checkpoints name their real classes."""
    modules = {}
    for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary", "omegaconf", "omegaconf.dictconfig",
                 "omegaconf.listconfig", "omegaconf.nodes", "omegaconf.base"):
        modules[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, modules[name])
    return types.SimpleNamespace(
        Dictionary=_fake_class(modules["fairseq.data.dictionary"], "Dictionary"),
        DictConfig=_fake_class(modules["omegaconf.dictconfig"], "DictConfig"),
        ListConfig=_fake_class(modules["omegaconf.listconfig"], "ListConfig"),
        AnyNode=_fake_class(modules["omegaconf.nodes"], "AnyNode"),
        StringNode=_fake_class(modules["omegaconf.nodes"], "StringNode"),
        Metadata=_fake_class(modules["omegaconf.base"], "Metadata"),
        ContainerMetadata=_fake_class(modules["omegaconf.base"], "ContainerMetadata"),
    )


def _fairseq_dictionary(libs, symbols):
    dictionary = libs.Dictionary()
    dictionary.__dict__.update(
        bos_word="<s>", pad_word="<pad>", eos_word="</s>", unk_word="<unk>",
        symbols=["<s>", "<pad>", "</s>", "<unk>", *symbols], count=[1] * (4 + len(symbols)),
        bos_index=0, pad_index=1, eos_index=2, unk_index=3, nspecial=4,
    )
    dictionary.indices = {symbol: index for index, symbol in enumerate(dictionary.symbols)}
    return dictionary


def _omegaconf(libs, value, parent=None, key=None):
    """Mimic omegaconf's pickled layout: containers keep children in `_content`, value nodes in `_val`."""
    if isinstance(value, (dict, list)):
        node = libs.DictConfig() if isinstance(value, dict) else libs.ListConfig()
        node._metadata = libs.ContainerMetadata()
        node._metadata.__dict__.update(
            ref_type=typing.Any, object_type=dict if isinstance(value, dict) else list, optional=True, key=key,
            flags={}, resolver_cache=defaultdict(dict), key_type=typing.Any, element_type=typing.Any,
        )
        node._parent = parent
        items = value.items() if isinstance(value, dict) else enumerate(value)
        children = {k: _omegaconf(libs, v, node, k) for k, v in items}
        node._content = children if isinstance(value, dict) else list(children.values())
        return node
    node = libs.StringNode() if isinstance(value, str) else libs.AnyNode()
    node._metadata = libs.Metadata()
    node._metadata.__dict__.update(ref_type=typing.Any, object_type=None, optional=True, key=key, flags={})
    node._parent = parent
    node._val = value
    return node


def _checkpoint(libs, **entries):
    checkpoint = {
        "args": None,
        "cfg": {"model": {"_name": "av_hubert", "encoder_embed_dim": 64}, "task": {"_name": "av_hubert_pretraining"}},
        "model": OrderedDict(weight=torch.arange(6.0).view(2, 3), steps=torch.tensor(3)),
        "criterion": None,
        "optimizer_history": [
            {"criterion_name": "AVHubertCriterion", "optimizer_name": "FairseqAdam",
             "lr_scheduler_state": {"best": 1.25}, "num_updates": 10}
        ],
        "task_state": {"dictionaries": [_fairseq_dictionary(libs, ["0", "1", "2"])]},
        "extra_state": {"metrics": OrderedDict(train={"loss": np.float64(2.5)}), "sizes": np.arange(3),
                        "previous_training_time": 12.5},
    }
    checkpoint.update(entries)
    return checkpoint


def test_loads_checkpoint_with_plain_dict_config(tmp_path, fake_libraries):
    path = tmp_path / "checkpoint.pt"
    torch.save(_checkpoint(fake_libraries), path)
    checkpoint = load_fairseq_checkpoint(path)

    assert checkpoint["cfg"]["model"] == {"_name": "av_hubert", "encoder_embed_dim": 64}
    assert torch.equal(checkpoint["model"]["weight"], torch.arange(6.0).view(2, 3))
    assert checkpoint["optimizer_history"][0]["num_updates"] == 10
    dictionary = checkpoint["task_state"]["dictionaries"][0]
    assert isinstance(dictionary, FairseqDictionary) and len(dictionary) == 7
    assert dictionary.symbols[4:] == ["0", "1", "2"] and dictionary.indices["2"] == 6 and dictionary.pad_index == 1
    assert checkpoint["extra_state"]["metrics"]["train"]["loss"] == 2.5
    assert np.array_equal(checkpoint["extra_state"]["sizes"], np.arange(3))


def test_loads_checkpoint_with_namespace_args(tmp_path, fake_libraries):
    args = argparse.Namespace(arch="av_hubert", task="av_hubert_pretraining", encoder_embed_dim=64, labels=["km"])
    path = tmp_path / "checkpoint.pt"
    torch.save(_checkpoint(fake_libraries, cfg=None, args=args), path)
    checkpoint = load_fairseq_checkpoint(path)

    assert checkpoint["args"] == vars(args)
    assert checkpoint["cfg"]["model"]["_name"] == "av_hubert"
    assert checkpoint["cfg"]["model"]["encoder_embed_dim"] == 64
    assert checkpoint["cfg"]["task"]["_name"] == "av_hubert_pretraining"


def test_namespace_inside_dict_config_becomes_dict(tmp_path, fake_libraries):
    """fairseq stored legacy model args as a Namespace inside an otherwise plain cfg."""
    cfg = {"model": argparse.Namespace(_name="av_hubert", encoder_layers=2), "task": {"_name": "x"}}
    path = tmp_path / "checkpoint.pt"
    torch.save(_checkpoint(fake_libraries, cfg=cfg), path)
    assert load_fairseq_checkpoint(path)["cfg"]["model"] == {"_name": "av_hubert", "encoder_layers": 2}


def test_loads_omegaconf_dictconfig(tmp_path, fake_libraries):
    cfg = {"model": {"_name": "av_hubert", "encoder_embed_dim": 64, "layer_norm_first": True, "final_dim": None,
                     "latent_temp": [2.0, 0.5]},
           "task": {"_name": "av_hubert_pretraining", "labels": ["km"]}}
    path = tmp_path / "checkpoint.pt"
    torch.save(_checkpoint(fake_libraries, cfg=_omegaconf(fake_libraries, cfg)), path)
    assert load_fairseq_checkpoint(path)["cfg"] == cfg


class _Payload:
    """Pickles as a call to `function(*arguments)`: what a malicious checkpoint does."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def _payloads(marker):
    return {
        "posix.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": _Payload(subprocess.Popen, ["touch", str(marker)]),
        # torch's own namespace is not blanket-allowed either: torch.load's allow-list refuses this one.
        "torch.serialization.save": _Payload(torch.save, {}, str(marker)),
    }


@pytest.mark.parametrize(
    "forbidden", ["posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen", "torch.serialization.save"]
)
@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 5"])
def test_code_running_pickle_is_refused_and_nothing_runs(tmp_path, fake_libraries, forbidden, writer):
    if forbidden == "posix.system" and os.name != "posix":
        pytest.skip("os.system pickles as posix.system only on POSIX")
    marker = tmp_path / "payload_ran"
    payload = _payloads(marker)[forbidden]
    path = tmp_path / "malicious.pt"
    if writer == "torch.save":
        torch.save(_checkpoint(fake_libraries, extra_state={"metrics": payload}), path)
    else:  # a bare pickle, as pre-zip torch.save wrote them
        path.write_bytes(pickle.dumps({"cfg": {}, "model": {}, "extra_state": payload}, protocol=int(writer[-1])))

    with pytest.raises(UnsafeCheckpointError) as error:
        load_fairseq_checkpoint(path)
    assert str(path) in str(error.value) and forbidden in str(error.value)
    assert not marker.exists()


def test_unknown_fairseq_class_is_refused(tmp_path, fake_libraries):
    """Only the allow-listed fairseq classes load, not everything under the fairseq package."""
    module = sys.modules["fairseq.data"]
    checkpoint = _checkpoint(fake_libraries, extra_state={"iterator": _fake_class(module, "EpochIterator")()})
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint, path)
    with pytest.raises(UnsafeCheckpointError, match="fairseq.data.EpochIterator"):
        load_fairseq_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist.pt"):
        load_fairseq_checkpoint(tmp_path / "does_not_exist.pt")


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt is not a fairseq checkpoint"):
        load_fairseq_checkpoint(path)


def test_zip_without_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="archive.pt is not a fairseq checkpoint"):
        load_fairseq_checkpoint(path)


@pytest.mark.parametrize(
    "content, expected",
    [(torch.zeros(3), "found Tensor"), ({"state_dict": {}}, r"found \['state_dict'\]"),
     ({"model": {}}, "neither a 'cfg' nor an 'args'")],
)
def test_torch_file_without_fairseq_layout_is_not_a_checkpoint(tmp_path, content, expected):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=expected):
        load_fairseq_checkpoint(path)
