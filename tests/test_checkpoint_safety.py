"""Nothing a checkpoint holds runs: crafted checkpoints (code to call wherever the description
has room for it, with the digest recomputed as an attacker would; a pickle; damaged, truncated,
empty and foreign files) are each refused with one line, and the side effect the crafted code
would have had (a file created, a file truncated) never happens."""

from __future__ import annotations

import copy
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from movielab.checkpoint import SECTION, digest, load_model
from movielab.cli import generate
from movielab.cli.train import train
from movielab.data.recorded import recorded_data
from movielab.errors import MovielabError
from tests.conftest import TINY, compose_config

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_v1"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A real checkpoint of today's format from a tiny run."""
    root = tmp_path_factory.mktemp("good")
    train(compose_config(root, [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", "logger=csv"]))
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture
def traps(tmp_path) -> dict[str, Any]:
    """Calls that would leave a trace: a file made by a shell, a file truncated by open()."""
    made = tmp_path / "made-by-the-checkpoint"
    kept = tmp_path / "keep-me.txt"
    kept.write_text("the user's file")
    evil_pickle = tmp_path / "evil.pkl"
    evil_pickle.write_bytes(pickle.dumps(_Touch(str(made))))
    return {
        "made": made,
        "kept": kept,
        "calls": {
            "os.system": {"_target_": "os.system", "command": f"touch {made}"},
            "builtins.open": {"_target_": "builtins.open", "file": str(kept), "mode": "w"},
            "subprocess.Popen": {"_target_": "subprocess.Popen", "args": ["touch", str(made)]},
            "torch.load": {"_target_": "torch.load", "f": str(evil_pickle), "weights_only": False},
            "hydra instantiate, nested": {
                "_target_": "hydra.utils.instantiate",
                "config": {"_target_": "os.system", "command": f"touch {made}"},
            },
        },
    }


class _Touch:
    """A pickle that runs `touch` when it is loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


def _craft(source: Path, target: Path, edit, refresh_digest: bool = True) -> Path:  # noqa: ANN001
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    section = checkpoint[SECTION]
    if refresh_digest and "digest" in section:
        section["digest"] = digest(checkpoint["state_dict"], section)
    torch.save(checkpoint, target)
    return target


def _set(path: str, value: Any):  # noqa: ANN202
    """An edit putting `value` at a dotted path of the movielab section."""

    def edit(checkpoint: dict) -> None:
        node = checkpoint[SECTION]
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = copy.deepcopy(value)

    return edit


def _refused(path: Path, traps: dict, match: str = "") -> str:
    with pytest.raises(MovielabError, match=match) as raised:
        load_model(path)
    assert not traps["made"].exists() and traps["kept"].read_text() == "the user's file"
    message = str(raised.value)
    assert "\n" not in message
    return message


PLACES = [
    "model",
    "model.net",
    "model.net.config.n_embd",
    "model.conditions.rating",
    "model.options.loss_on",
    "tokenizer",
    "template",
    "data.source",
    "metrics.val/loss",
]


@pytest.mark.parametrize(
    "call", ["os.system", "builtins.open", "subprocess.Popen", "torch.load", "hydra instantiate, nested"]
)
@pytest.mark.parametrize("place", PLACES)
def test_code_named_anywhere_in_the_description_is_refused(good, tmp_path, traps, call, place):
    crafted = _craft(good, tmp_path / "crafted.ckpt", _set(place, traps["calls"][call]))
    message = _refused(crafted, traps)
    assert "_target_" in message or "plain data" in message or "not" in message


def test_without_a_fresh_digest_an_edited_description_is_corrupt(good, tmp_path, traps):
    crafted = _craft(
        good, tmp_path / "edited.ckpt", _set("model.net.config.n_embd", 64), refresh_digest=False
    )
    _refused(crafted, traps, match="checkpoint is corrupt: .*do not match their digest")


def test_the_recorded_config_is_kept_as_data_and_never_built(good, tmp_path, traps):
    calls = traps["calls"]
    crafted = _craft(good, tmp_path / "config.ckpt", _set("config.callbacks.evil", calls["os.system"]))
    model = load_model(crafted)  # the run's config is a record: loading reads none of it
    assert model.config["callbacks"]["evil"]["_target_"] == "os.system" and not traps["made"].exists()
    for where, node in [
        ("data.reader", calls["subprocess.Popen"]),
        ("data.tokenizer", calls["hydra instantiate, nested"]),
        ("data.template.text", "${oc.env:HOME}"),
        ("data.batching.batch_size", calls["torch.load"]),
    ]:
        config = copy.deepcopy(model.config)
        *parents, last = where.split(".")
        node_parent = config
        for key in parents:
            node_parent = node_parent[key]
        node_parent[last] = node
        with pytest.raises(MovielabError, match="refused"):
            recorded_data(config, cache_dir=str(tmp_path / "cache"))
        assert not traps["made"].exists()
    assert recorded_data(model.config, cache_dir=str(tmp_path / "cache")).prepare().fingerprint


@pytest.mark.parametrize(
    "place", ["config.model", "config.model.net", "config.data.template", "config.model.conditions.rating"]
)
def test_a_format_1_checkpoint_naming_other_code_is_refused(tmp_path, traps, place):
    source = FIXTURES / "title_transformer.ckpt"
    edit = _set(place, {**traps["calls"]["os.system"], "net": {}, "config": {}})
    crafted = _craft(source, tmp_path / "legacy.ckpt", edit, refresh_digest=False)
    _refused(crafted, traps, match="refused|not a config node|unexpected field")


def test_a_pickle_is_refused_unread(tmp_path, traps):
    path = tmp_path / "pickle.ckpt"
    torch.save({"movielab": {}, "state_dict": {}, "payload": _Touch(str(traps["made"]))}, path)
    _refused(path, traps, match="holds objects other than weights")
    raw = tmp_path / "raw.ckpt"
    raw.write_bytes(pickle.dumps(_Touch(str(traps["made"]))))
    _refused(raw, traps, match="(holds objects other than weights|not a movielab checkpoint)")


def test_a_description_of_a_giant_model_is_refused_before_it_is_built(good, tmp_path, traps):
    giant = _set(
        "model.net.config",
        {"vocab_size": 70, "block_size": 32, "n_layer": 64, "n_head": 64, "n_embd": 65536},
    )
    crafted = _craft(good, tmp_path / "giant.ckpt", giant)
    _refused(crafted, traps, match="the weights do not fit the model it describes")


@pytest.mark.parametrize("where", [0.02, 0.3, 0.6, 0.95])
def test_flipped_bytes_are_refused(good, tmp_path, traps, where):
    data = bytearray(good.read_bytes())
    position = int(len(data) * where)
    data[position : position + 8] = bytes(b ^ 0xFF for b in data[position : position + 8])
    (tmp_path / "flipped.ckpt").write_bytes(bytes(data))
    _refused(
        tmp_path / "flipped.ckpt", traps, match="corrupt|not a movielab checkpoint|not plain data|does not"
    )


@pytest.mark.parametrize("keep", [0.0001, 0.1, 0.5, 0.9, 0.999])
def test_a_truncated_checkpoint_is_corrupt(good, tmp_path, traps, keep):
    data = good.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: max(1, int(len(data) * keep))])
    _refused(tmp_path / "cut.ckpt", traps, match="corrupt")


def test_a_folder_an_empty_file_and_text_are_refused(tmp_path, traps):
    (tmp_path / "folder.ckpt").mkdir()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    _refused(tmp_path / "folder.ckpt", traps, match="checkpoint not found: .*it is a folder")
    _refused(tmp_path / "empty.ckpt", traps, match="checkpoint is corrupt: .* is empty")
    _refused(tmp_path / "notes.ckpt", traps, match="is not a movielab checkpoint")


def test_a_run_folder_given_for_its_checkpoint_names_the_checkpoint_inside(good, tmp_path, traps):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(good.read_bytes())
    inside = re.escape(f"ckpt={run / 'checkpoints' / 'last.ckpt'}")
    _refused(run, traps, match=f"checkpoint not found: .*it is a folder; its last checkpoint is {inside}")


class _OtherProject(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_lightning_checkpoint_of_another_project_is_refused(tmp_path, traps):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3)), batch_size=2)
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(_OtherProject(), data)
    trainer.save_checkpoint(tmp_path / "other.ckpt")
    _refused(tmp_path / "other.ckpt", traps, match="is not a movielab checkpoint .*no 'movielab' section")


def test_generate_reports_a_crafted_checkpoint_in_one_line(good, tmp_path, traps, monkeypatch, capsys):
    crafted = _craft(good, tmp_path / "crafted.ckpt", _set("model.net", traps["calls"]["os.system"]))
    monkeypatch.setattr(sys, "argv", ["movielab.generate", f"ckpt={crafted}", "save=false"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        generate.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not traps["made"].exists()


def test_a_checkpoint_with_damaged_optimizer_moments_never_resumes(good, tmp_path):
    def damage(checkpoint: dict) -> None:
        moments = next(iter(checkpoint["optimizer_states"][0]["state"].values()))
        moments["exp_avg"].view(-1)[0] += 1.0  # what a flipped byte in the moments does

    damaged = _craft(good, tmp_path / "damaged.ckpt", damage, refresh_digest=False)
    cfg = compose_config(tmp_path, [*TINY, "trainer.max_steps=4", f"ckpt_path={damaged}"])
    with pytest.raises(MovielabError, match="checkpoint is corrupt: .*optimizer or training state"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
