"""ReferenceBuilder.all_reduce and all_reduce_builders across real processes (torch.distributed, gloo, loopback only)."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from imagescore_det.scoring import ReferenceBuilder, all_reduce_builders

NUM_IMAGES = 21


def images(start, stop):
    generator = torch.Generator().manual_seed(0)
    conv = torch.relu(torch.randn(NUM_IMAGES, 3, 4, 4, generator=generator) + 0.5)
    fc = torch.relu(torch.randn(NUM_IMAGES, 7, generator=generator))
    return {"conv": conv[start:stop], "fc": fc[start:stop]}


def shard_worker(rank, world_size, store_path, bounds, result_path):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method="file://" + store_path, rank=rank, world_size=world_size
    )
    try:
        builder = ReferenceBuilder()
        start, stop = bounds[rank]
        if stop > start:  # a rank with an empty shard still joins the reduction
            builder.update(images(start, stop))
        reference = builder.all_reduce().finalize()
        if rank == world_size - 1:
            probe = images(0, NUM_IMAGES)
            torch.save(
                {
                    "mean": reference.mean,
                    "scores": reference.score(probe),
                    "n": reference.metadata["num_images"],
                },
                result_path,
            )
    finally:
        dist.destroy_process_group()


def run_sharded(tmp_path, bounds):
    result_path = str(tmp_path / "result.pt")
    mp.spawn(
        shard_worker,
        args=(len(bounds), str(tmp_path / "store"), bounds, result_path),
        nprocs=len(bounds),
        join=True,
    )
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


def keyed_worker(rank, world_size, store_path, result_path):
    """Each rank holds a shard (images 0-7, 8-20) of two builders (keys 0 and 1: even and odd images); merged by key."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method="file://" + store_path, rank=rank, world_size=world_size
    )
    try:
        builders = {key: ReferenceBuilder() for key in (0, 1)}
        for index in range(*[(0, 8), (8, NUM_IMAGES)][rank]):
            builders[index % 2].update(images(index, index + 1))
        merged = all_reduce_builders(builders)
        assert all(
            builders[key].num_images < merged[key].num_images for key in builders
        )  # new totals; shards left alone
        references = {key: builder.finalize() for key, builder in merged.items()}
        torch.save({key: (ref.metadata["num_images"], ref.mean, ref.score(images(0, NUM_IMAGES))) for key, ref in references.items()},
                   result_path % rank)  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_all_reduce_builders_merges_every_key_like_one_process(tmp_path):
    result_path = str(tmp_path / "result%d.pt")
    mp.spawn(keyed_worker, args=(2, str(tmp_path / "store"), result_path), nprocs=2, join=True)
    ranks = [torch.load(result_path % rank) for rank in range(2)]
    for key in (0, 1):
        single = ReferenceBuilder()
        for index in range(key, NUM_IMAGES, 2):
            single.update(images(index, index + 1))
        single = single.finalize()
        for result in ranks:  # every rank holds the same total
            count, mean, scores = result[key]
            assert count == single.metadata["num_images"] == len(range(key, NUM_IMAGES, 2))
            for name, value in single.mean.items():
                assert torch.allclose(mean[name], value, rtol=0, atol=1e-12)
            assert torch.equal(scores, single.score(images(0, NUM_IMAGES)))
        assert torch.equal(ranks[0][key][2], ranks[1][key][2])  # bit-identical across ranks


def test_all_reduce_builders_needs_a_process_group():
    with pytest.raises(RuntimeError, match="initialised torch.distributed process group"):
        all_reduce_builders({0: ReferenceBuilder()})
