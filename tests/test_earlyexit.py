"""Dynamic early exit: exit rule, joint training loss, per-video FLOPs of forced exits, threshold sweep."""
import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from vidbench.exits import STRICT, ExitHead, confident, cumulative_costs, exit_index, joint_exit_logits, threshold_label
from vidbench.flops import attach
from vidbench.plugins import get_method
from vidbench.sparse import set_sparse

T, SIZE, CLASSES = 4, 32, 5


def build(method, backbone="resnet_tiny", **cfg):
    spec = get_method(method)
    model = spec.build({**spec.defaults, **cfg}, backbone=backbone, num_classes=CLASSES, num_segments=T)
    return attach(model, (T, 3, SIZE, SIZE)).eval()


def clips(videos=6, seed=0):
    return torch.randn(videos, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def counted(model, fn, x):
    """MACs fvcore counts for a function of the clip (using `model`'s modules), traced on its own."""
    class Wrap(nn.Module):
        def __init__(self, owner):
            super().__init__()
            self.owner = owner

        def forward(self, x):
            return fn(x)

    analysis = FlopCountAnalysis(Wrap(model), x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total()


def test_exit_index_takes_the_first_confident_checkpoint():
    sure, unsure = torch.tensor([10.0, 0, 0]), torch.zeros(3)
    z = torch.stack([torch.stack([unsure, sure, sure]), torch.stack([sure, unsure, unsure]),
                     torch.stack([unsure, unsure, unsure])])            # [B=3, E=3, K=3]
    assert exit_index(z, 0.9).tolist() == [1, 0, 2]
    assert exit_index(z, 0.0).tolist() == [0, 0, 0]
    assert exit_index(z, STRICT).tolist() == [2, 2, 2]
    assert exit_index(z, [0.99999, 0.5]).tolist() == [1, 2, 2]         # one threshold per early checkpoint


def test_joint_loss_is_the_mean_cross_entropy_of_the_exits():
    z = torch.randn(7, 3, 5)
    labels = torch.randint(0, 5, (7,))
    logits, extra = joint_exit_logits(z)
    mean_ce = torch.stack([F.cross_entropy(z[:, e], labels) for e in range(3)]).mean()
    assert (F.cross_entropy(logits, labels) + extra).item() == pytest.approx(mean_ce.item(), rel=1e-5)
    assert extra.item() >= 0


@pytest.mark.parametrize("method", ["earlyexit", "earlyexit_msdnet", "earlyexit_frames"])
def test_forced_last_exit_is_dense_and_costs_increase(method):
    model = build(method)
    costs = model.exit_costs()
    assert torch.all(costs[1:] > costs[:-1]) and costs[-1].item() == model.dense_flops
    for e in range(len(costs)):
        model.force_exit = e
        out = model(clips())
        assert torch.all(out.flops == costs[e].float())
        assert torch.all(out.stats["exit_at"].argmax(1) == e)
        set_sparse(model, True)                    # the realized path stops every video at the forced exit too
        with torch.no_grad():
            realized = model(clips())
        set_sparse(model, False)
        torch.testing.assert_close(realized.logits, out.logits, rtol=1e-4, atol=1e-5)
        assert torch.equal(realized.flops, out.flops)


def test_resnet_first_exit_costs_what_it_runs():
    model = build("earlyexit")
    x = clips(1)

    def first_checkpoint(x):
        f = model.backbone.layer2(model.backbone.layer1(model.backbone.stem(x.flatten(0, 1))))
        return model.heads[0](f)

    assert model.exit_costs()[0].item() == counted(model, first_checkpoint, x)
    assert model.exit_costs()[0].item() < 0.7 * model.dense_flops


def test_msdnet_first_exit_costs_what_it_runs():
    model = build("earlyexit_msdnet")
    assert len(model.net.heads) == 3
    x = clips(1)
    def first_checkpoint(x):
        scales = model.net.blocks[0](x.flatten(0, 1))
        # every scale of the block is computed (a video that goes on needs them), not only the classifier's
        return tuple(f for f in scales if f is not None) + (model.net.heads[0](scales[-1]),)

    assert model.exit_costs()[0].item() == counted(model, first_checkpoint, x)


def test_frame_exit_costs_what_fewer_frames_cost():
    model = build("earlyexit_frames")
    tsn = get_method("tsn")
    for frames in (1, 2, 3):
        fewer = attach(tsn.build(tsn.defaults, backbone="resnet_tiny", num_classes=CLASSES, num_segments=frames),
                       (frames, 3, SIZE, SIZE))
        assert model.exit_costs()[frames - 1].item() == pytest.approx(fewer.dense_flops)


def test_frame_exit_equals_running_the_first_frames_only():
    model = build("earlyexit_frames")
    x = clips(2)
    z = model.exit_logits(x)
    # the causal shift makes frame t independent of later frames: zeroing the later frames changes nothing
    cut = x.clone()
    cut[:, 2:] = 0
    assert torch.allclose(model.exit_logits(cut)[:, 1], z[:, 1], atol=1e-5)
    assert not torch.allclose(model.exit_logits(cut)[:, 3], z[:, 3], atol=1e-5)


@pytest.mark.parametrize("method", ["earlyexit", "earlyexit_msdnet", "earlyexit_frames"])
def test_threshold_sweep_is_monotone_from_first_exit_to_dense(method):
    model = build(method)
    torch.manual_seed(0)
    labels = torch.randint(0, CLASSES, (6,))
    with torch.no_grad():
        out = model(clips())
    outputs = {"logits": out.logits, "labels": labels, "flops": out.flops,
               **{f"stats.{k}": v for k, v in out.stats.items()}}
    points = model.eval_points(outputs)
    gflops = [p["gflops"] for p in points]
    assert gflops == sorted(gflops)
    assert gflops[0] * 1e9 == pytest.approx(model.exit_costs()[0].item())
    assert gflops[0] * 1e9 < model.dense_flops
    assert gflops[-1] * 1e9 == pytest.approx(model.dense_flops)
    assert {"point", "top1", "top5", "gflops"} <= set(points[0])
    default = next(p for p in points if p["threshold"] == model.threshold)
    assert default["gflops"] == pytest.approx(out.flops.double().mean().item() / 1e9)
    summary = model.summarize({k.removeprefix("stats."): v.mean(0).tolist() for k, v in outputs.items()
                               if k.startswith("stats.")})
    assert "exit_logits" not in summary and len(summary["exit_at"]) == len(model.exit_costs())


def test_training_output_trains_every_exit():
    model = build("earlyexit").train()
    out = model(clips(4))
    loss = F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])) + out.losses["exits"]
    loss.backward()
    assert all(head.fc.weight.grad.abs().sum() > 0 for head in model.heads)


@pytest.mark.parametrize("backbone, exits", [("resnet18", 3), ("resnet50", 5)])
def test_paper_sizes_build(backbone, exits):
    method = "earlyexit" if backbone == "resnet18" else "earlyexit_msdnet"
    spec = get_method(method)
    model = spec.build(spec.defaults, backbone=backbone, num_classes=174, num_segments=8)
    assert len(model.heads if method == "earlyexit" else model.net.heads) == exits


def test_msdnet_checkpoints_are_named_from_one():
    assert build("earlyexit_msdnet").checkpoint_names() == ["block1", "block2", "block3"]


def test_frame_exits_average_the_frame_logits_seen_so_far():
    model = build("earlyexit_frames").eval()
    x = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frame_logits = model.fc(model.backbone(x.flatten(0, 1))).view(2, T, -1)
        exits = model.exit_logits(x)
    for n in model.frames:
        assert torch.allclose(exits[:, model.frames.index(n)], frame_logits[:, :n].mean(1), atol=1e-5)


def test_early_exit_reports_its_checkpoints_and_labels_its_thresholds():
    model = build("earlyexit", sweep=[0.0, 0.5, STRICT]).eval()
    with torch.no_grad():
        out = model(torch.randn(3, T, 3, SIZE, SIZE))
    outputs = {"labels": torch.tensor([0, 1, 2]), **{f"stats.{k}": v for k, v in out.stats.items()}}
    assert [p["point"] for p in model.eval_points(outputs)] == ["first exit", "thr 0.5", "no early exit"]
    summary = model.summarize({k: v.mean(0).tolist() for k, v in out.stats.items()})
    assert summary["exit_checkpoints"] == ["layer2", "layer3", "layer4"]
    assert summary["checkpoint_gflops"] == pytest.approx([c / 1e9 for c in model.exit_costs().tolist()])


def test_the_last_exit_is_tsn_on_the_whole_backbone():
    model = build("earlyexit").eval()
    x = torch.randn(2, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tsn = model.heads[-1].fc(model.backbone(x.flatten(0, 1))).view(2, T, -1).mean(1)
        assert torch.allclose(model.exit_logits(x)[:, -1], tsn, atol=1e-5)


def test_msdnet_size_and_forced_exit_come_from_the_config():
    model = build("earlyexit_msdnet", msdnet={"resnet_tiny": {"blocks": 2}}, force_exit=0)
    assert len(model.net.heads) == 2
    assert torch.all(model(clips(2)).stats["exit_at"].argmax(1) == 0)


def test_msdnet_of_imagenet_size_runs():
    spec = get_method("earlyexit_msdnet")
    model = spec.build(spec.defaults, backbone="resnet18", num_classes=CLASSES, num_segments=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 3, 64, 64)).logits.shape == (1, CLASSES)


def test_msdnet_first_layer_and_classifier_as_published():
    """Huang et al.'s ImageNet stem (7x7 stride 2, 3x3 max-pool stride 2: 224 -> 56), resnet_tiny's on small
    inputs (3x3 stride 2: 32 -> 16), each further scale at half the size; every exit classifier with dropout."""
    import importlib
    msdnet = importlib.import_module(get_method("earlyexit_msdnet").module().__package__ + ".msdnet")
    sides = lambda layer, size: [x.shape[-1] for x in layer(torch.zeros(1, 3, size, size))]  # noqa: E731
    large = msdnet.FirstLayer([8, 16, 32], small_input=False)
    assert large.convs[0][0][0].kernel_size == (7, 7) and sides(large, 224) == [56, 28, 14]
    assert sides(msdnet.FirstLayer([8, 16, 32], small_input=True), 32) == [16, 8, 4]
    classifier = msdnet.Classifier(16, None, CLASSES, dropout=0.3)
    assert [m.p for m in classifier.modules() if isinstance(m, nn.Dropout)] == [0.3]


def test_a_confidence_equal_to_its_threshold_exits_and_only_a_threshold_above_one_never_does():
    certain = torch.tensor([[100.0, 0.0]])          # its float32 softmax is exactly [1, 0]
    assert confident(certain, torch.tensor(1.0)).item()
    assert [threshold_label(v) for v in (0.0, 0.5, 1.0, STRICT)] == ["first exit", "thr 0.5", "thr 1",
                                                                     "no early exit"]


def test_cumulative_costs_count_modules_missing_from_the_table_as_free():
    assert cumulative_costs({"": 10.0, "a": 3.0}, [["a"], ["b"]]) == [10.0, 10.0]
    assert cumulative_costs({"a": 3.0}, [["a"], ["b"]]) == [0.0, 0.0]


def test_exit_costs_are_exact_and_every_statistic_spans_every_checkpoint():
    model = build("earlyexit", sweep=[0.0, STRICT]).eval()
    model.costs = {**model.costs, "": model.costs[""] + 2 ** 25 + 1}   # not a float32 number
    costs = model.exit_costs()
    assert costs.tolist() == cumulative_costs(model.costs, model.segments())
    x = clips(3)
    for sparse in (False, True):                     # every video stops at the first checkpoint
        model.force_exit = 0
        set_sparse(model, sparse)
        with torch.no_grad():
            out = model(x)
        assert out.stats["exit_at"].tolist() == [[1.0, 0.0, 0.0]] * 3 and out.losses == {}
    set_sparse(model, False)
    model.force_exit = None
    with torch.no_grad():
        out = model(x)
    outputs = {"labels": torch.tensor([0, 1, 2]), **{f"stats.{k}": v for k, v in out.stats.items()}}
    first, last = model.eval_points(outputs)
    assert first["exit_share"] == [1.0, 0.0, 0.0] and last["exit_share"] == [0.0, 0.0, 1.0]
    assert first["gflops"] == pytest.approx(costs[0].item() / 1e9, rel=1e-12)
    assert last["gflops"] == pytest.approx(costs[-1].item() / 1e9, rel=1e-12)
    summary = model.summarize({"exit_at": [0.5, 0.25, 0.25]})
    assert summary["checkpoint_gflops"] == [c / 1e9 for c in costs.tolist()]
    assert summary["mean_exit"] == 0.75                  # 0 * 0.5 + 1 * 0.25 + 2 * 0.25


def test_resnet50_exits_read_each_stage_s_bottleneck_width():
    model = build("earlyexit", backbone="resnet50")
    assert [head.features[0].in_channels for head in model.heads[:-1]] == [512, 1024]
    assert model.heads[-1].fc.in_features == 2048
    with torch.no_grad():
        assert model(clips(1)).logits.shape == (1, CLASSES)


def test_an_intermediate_head_is_a_strided_3x3_conv_bn_relu_then_pool_dropout_fc():
    head = ExitHead(16, 5, channels=32, dropout=0.5)
    conv, bn, relu = head.features[:3]
    assert (conv.kernel_size, conv.stride, conv.padding, conv.bias) == ((3, 3), (2, 2), (1, 1), None)
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU) and head.fc.in_features == 32
    assert conv(torch.zeros(1, 16, 14, 14)).shape == (1, 32, 7, 7)
    assert [m.p for m in head.features if isinstance(m, nn.Dropout)] == [0.5]
