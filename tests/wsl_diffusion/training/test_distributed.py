"""Two gloo processes on CPU take the same step as one process with the same global batch."""
import os
import socket

import numpy as np
import torch
import torch.multiprocessing as mp

from label_models.corruption import CorruptionSpec, corrupt
from wsl_diffusion.run import load_checkpoint
from wsl_diffusion.config import TrainConfig
from wsl_diffusion.posterior import PosteriorConfig
from wsl_diffusion.training.loop import new_state, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_setup():
    from wsl_diffusion.data.datasets import ArrayDataset, load_digits_split

    full, _ = load_digits_split()
    data = ArrayDataset(full.images[:120], full.targets[:120], full.class_names)
    labels = corrupt(data.targets, num_classes=10, spec=CorruptionSpec(supervision="noisy", rate=0.4))
    # 3 steps of global batch 16, table refreshed after step 1 and 2 so the classification term runs
    cfg = TrainConfig(model="tiny", batch_size=16, total_kimg=3 * 16 / 1000, table_refresh_kimg=16 / 1000,
                      checkpoint_every_kimg=1.0, samples_per_class=0, lr=2e-3, lambda_cls=1.0,
                      posterior=PosteriorConfig(schedule="interval", sigma_lo=0.3, sigma_hi=5.0, num_sigmas=2),
                      supervision={"supervision": "noisy", "rate": 0.4})
    return cfg, data, labels


def worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg, data, labels = make_setup()
    train(cfg, run_dir, train_data=data, labels=labels, progress=False)
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path):
    cfg, data, labels = make_setup()
    torch.set_num_threads(1)
    train(cfg, tmp_path / "one", train_data=data, labels=labels, progress=False)
    mp.spawn(worker, args=(2, free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    one = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    two = load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert one["step"] == two["step"] == 3
    for key in ("net", "ema"):
        for name, value in one[key].items():
            torch.testing.assert_close(two[key][name], value, rtol=1e-4, atol=1e-5, msg=f"{key}.{name}")
    torch.testing.assert_close(two["table"], one["table"], rtol=1e-4, atol=1e-5)
    # the steps really moved the weights: the comparison is not between two initial states
    init = new_state(cfg, (1, 8, 8), 10, np.zeros(10), len(data), "cpu").net.state_dict()
    assert any(not torch.allclose(one["net"][n], init[n]) for n in init)
