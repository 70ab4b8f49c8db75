"""ReferenceBuilder.all_reduce across real processes (torch.distributed, gloo, loopback only)."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imagescore_det.scoring import ReferenceBuilder

NUM_IMAGES = 21


def images(start, stop):
    generator = torch.Generator().manual_seed(0)
    conv = torch.relu(torch.randn(NUM_IMAGES, 3, 4, 4, generator=generator) + 0.5)
    fc = torch.relu(torch.randn(NUM_IMAGES, 7, generator=generator))
    return {"conv": conv[start:stop], "fc": fc[start:stop]}


def shard_worker(rank, world_size, store_path, bounds, result_path):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method="file://" + store_path, rank=rank, world_size=world_size)
    try:
        builder = ReferenceBuilder()
        start, stop = bounds[rank]
        if stop > start:  # a rank with an empty shard still joins the reduction
            builder.update(images(start, stop))
        reference = builder.all_reduce().finalize()
        if rank == world_size - 1:
            probe = images(0, NUM_IMAGES)
            torch.save({"mean": reference.mean, "scores": reference.score(probe), "n": reference.metadata["num_images"]}, result_path)
    finally:
        dist.destroy_process_group()


def run_sharded(tmp_path, bounds):
    result_path = str(tmp_path / "result.pt")
    mp.spawn(shard_worker, args=(len(bounds), str(tmp_path / "store"), bounds, result_path), nprocs=len(bounds), join=True)
    return torch.load(result_path)


def test_two_processes_build_the_reference_of_one(tmp_path):
    single = ReferenceBuilder().update(images(0, NUM_IMAGES)).finalize()
    result = run_sharded(tmp_path, [(0, 8), (8, NUM_IMAGES)])
    assert result["n"] == NUM_IMAGES
    for name, mean in single.mean.items():
        assert torch.allclose(result["mean"][name], mean, rtol=0, atol=1e-12)
    assert torch.equal(result["scores"], single.score(images(0, NUM_IMAGES)))


def test_a_process_without_images_takes_shapes_from_the_others(tmp_path):
    single = ReferenceBuilder().update(images(0, NUM_IMAGES)).finalize()
    result = run_sharded(tmp_path, [(0, NUM_IMAGES), (NUM_IMAGES, NUM_IMAGES)])
    assert result["n"] == NUM_IMAGES
    assert torch.equal(result["scores"], single.score(images(0, NUM_IMAGES)))
