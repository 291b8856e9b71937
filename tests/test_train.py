import json

import pytest

from toolchain import train
from toolchain.errors import CompressError


def test_training_learns_real_digits(trained_lenet):
    side = json.loads(trained_lenet.with_name(trained_lenet.name + ".json").read_text())
    assert side["stage"] == "train"
    assert side["data"]["spec"] == "digits" and not side["data"]["synthetic"]
    assert side["metrics"]["accuracy"] > 80  # chance is 10%
    assert side["metrics"]["eval_samples"] == side["data"]["test_samples"]
    assert side["metrics"]["params"] == 61706 and side["metrics"]["macs"] > 0


def test_options_are_validated():
    for bad in (train.TrainOptions(epochs=0), train.TrainOptions(lr=-1), train.TrainOptions(batch_size=0)):
        with pytest.raises(CompressError):
            bad.validate()


def test_model_that_does_not_fit_the_data_is_a_clear_error(tmp_path):
    f = tmp_path / "net.py"
    f.write_text("from torch import nn\n"
                 "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(999, 10))\n")
    with pytest.raises(CompressError, match="does not run on inputs"):
        train.prepare(f"{f}:make", "digits")


def test_prepare_reads_the_data_spec_from_the_sidecar(trained_lenet):
    prep = train.prepare(str(trained_lenet), None, test_limit=50)
    assert prep.dataset.name == "digits" and prep.input_shape == (1, 32, 32)
    assert train.evaluate(prep.model, prep.dataset.test) > 60


def test_eval_samples_reports_on_stratified_subsets_of_both_splits(tmp_path):
    full = train.run("zoo:lenet5", tmp_path / "a.pt", train.TrainOptions(epochs=0.2, data="digits")).metrics
    some = train.run("zoo:lenet5", tmp_path / "b.pt", train.TrainOptions(epochs=0.2, data="digits",
                                                                          eval_samples=50)).metrics
    assert some["eval_samples"] == 50 and some["val_samples"] == 50
    assert full["eval_samples"] > 50 and full["val_samples"] > 50


def test_a_reconstruction_head_learns_normal_samples_and_scores_anomalies(tmp_path):
    """The accordion autoencoder as an anomaly detector: trained on class 0 only, its reconstruction
    error ranks the other classes (digits 1-9 here, frauds on the real data) as anomalies."""
    from toolchain import export, prune

    art = train.run("zoo:a2e?widths=32,8,32&head=reconstruction", tmp_path / "ae.pt", train.TrainOptions(epochs=20,
                                                                                                         data="digits"))
    assert art.metrics["metric"] == "roc_auc_x100"
    assert art.metrics["accuracy"] > 75 and art.metrics["val_accuracy"] > 75  # ROC-AUC x100, not top-1
    pruned = prune.run(str(art.path), tmp_path / "p.pt", prune.PruneOptions(
        order=prune.Order.SEQUENTIAL, target_params=0.6, include_linear=True, finetune_epochs=0.5, final_epochs=1,
        val_samples=200))
    assert pruned.metrics["metric"] == "roc_auc_x100" and pruned.metrics["accuracy"] > 60
    onnx = export.run(str(pruned.path), tmp_path / "p.onnx", export.ExportOptions())
    assert abs(onnx.metrics["accuracy"] - pruned.metrics["accuracy"]) < 1.0  # the same score from onnxruntime


def test_distillation_mixes_the_teacher_in_and_caches_its_logits(tmp_path, monkeypatch):
    import torch
    from torch.utils.data import TensorDataset

    monkeypatch.setattr("toolchain.data.CACHE_DIR", tmp_path)
    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
    teacher_net = torch.nn.Linear(8, 3)
    soft = train.teacher_logits(teacher_net, x, cache_key="t")
    assert len(list((tmp_path / "teacher").glob("*.pt"))) == 1
    assert torch.equal(train.teacher_logits(torch.nn.Linear(8, 3), x, cache_key="t"), soft)  # read back

    def student(distill):
        torch.manual_seed(1)
        net = torch.nn.Linear(8, 3)
        train.fit(net, TensorDataset(x, y), train.TrainOptions(epochs=30, lr=0.1, distill=distill), teacher=soft)
        return net

    plain, pure = student(0.0), student(1.0)
    agree = (plain(x).argmax(1) == soft.argmax(1)).float().mean(), (pure(x).argmax(1) == soft.argmax(1)).float().mean()
    assert agree[1] > 0.95 and agree[1] > agree[0]  # all weight on the teacher: the student copies it
    with pytest.raises(CompressError, match="distill"):
        train.TrainOptions(distill=1.5).validate()


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, monkeypatch):
    import contextlib

    import torch
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    ds = TensorDataset(torch.randn(200, 6), torch.randint(0, 3, (200,)))
    opts = train.TrainOptions(epochs=3, lr=0.1, batch_size=32, seed=4)

    def net():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Dropout(0.3), torch.nn.Linear(16, 3))

    whole = net()
    train.fit(whole, ds, opts)

    @contextlib.contextmanager
    def dies_in_step_8(description, total):
        calls = []

        def advance(n=1, **kw):
            calls.append(n)
            if len(calls) > 8:  # the first call reports the steps already done; step 8 never saves
                raise KeyboardInterrupt

        yield advance

    ckpt = tmp_path / "run.ckpt"
    monkeypatch.setattr(train, "CHECKPOINT_EVERY_S", 0.0)  # save after every step
    monkeypatch.setattr(train, "task", dies_in_step_8)
    cut = net()
    with pytest.raises(KeyboardInterrupt):
        train.fit(cut, ds, opts, checkpoint=ckpt)
    assert ckpt.exists() and torch.load(ckpt, weights_only=True)["done"] == 7
    monkeypatch.undo()
    ran = []

    @contextlib.contextmanager
    def counts(description, total):
        yield lambda n=1, **kw: ran.append(n)

    monkeypatch.setattr(train, "task", counts)
    resumed = net()
    train.fit(resumed, ds, opts, checkpoint=ckpt)
    assert ran[0] == 7 and len(ran) - 1 == 18 - 7  # picked up after step 7 of 18, ran only the other 11
    assert not ckpt.exists()  # removed once the run completes
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_confidence_is_the_mean_probability_of_the_true_class():
    import torch

    from toolchain.train import confidence

    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # p(true) 0.5 and sigmoid(2) = 0.8808
    assert confidence(logits, torch.tensor([0, 0]), 1.0) == pytest.approx(100 * (0.5 + 0.880797) / 2, abs=1e-3)
    assert confidence(logits, torch.tensor([1, 1]), 1.0) == pytest.approx(100 * (0.5 + 0.119203) / 2, abs=1e-3)


def test_confidence_fits_the_temperature_so_a_change_of_scale_alone_costs_nothing():
    import torch

    from toolchain.train import confidence, temperature

    torch.manual_seed(0)
    y = torch.randint(0, 10, (500,))
    out = torch.randn(500, 10) + 3 * torch.nn.functional.one_hot(y, 10)
    assert confidence(out / 4, y, 1.0) < confidence(out, y, 1.0) - 20  # raw: the shrunk logits read far worse
    assert confidence(out / 4, y) == pytest.approx(confidence(out, y), abs=0.05)  # fitted: the same
    assert temperature(out / 4, y) == pytest.approx(temperature(out, y) / 4, rel=1e-3)
    noisier = out + 2 * torch.randn(500, 10)  # a real loss of information still reads as one
    assert confidence(noisier, y) < confidence(out, y) - 5


def test_fidelity_is_the_overlap_with_the_reference_outputs_and_ignores_labels_and_scale():
    import torch

    from toolchain.train import fidelity, temperature

    ref = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # softmax (0.5, 0.5) and (0.8808, 0.1192)
    assert fidelity(ref, ref, 1.0, 1.0) == pytest.approx(100.0)
    flat = torch.zeros(2, 2)  # (0.5, 0.5) both: overlap 1 on the first image, 0.5 + 0.1192 on the second
    assert fidelity(flat, ref, 1.0, 1.0) == pytest.approx(100 * (1 + 0.5 + 0.119203) / 2, abs=1e-3)
    torch.manual_seed(0)
    y = torch.randint(0, 10, (500,))
    out = torch.randn(500, 10) + 3 * torch.nn.functional.one_hot(y, 10)
    t = temperature(out, y)
    assert fidelity(out / 4, out, temperature(out / 4, y), t) == pytest.approx(100.0, abs=0.05)  # scale alone
    noisier = out + 2 * torch.randn(500, 10)
    assert fidelity(noisier, out, temperature(noisier, y), t) < 90  # a real change of the outputs


def test_adaptive_bn_reestimates_the_statistics():
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    x = torch.randn(256, 4) * 3 + 1
    train.adapt_batchnorm(net, x, batch=64)
    with torch.no_grad():
        h = net[0](x)
    assert torch.allclose(net[1].running_mean, h.mean(0), atol=1e-4)
    # the mean of 4 batch variances, not the variance of all 256: a few percent apart
    assert torch.allclose(net[1].running_var, h.var(0), rtol=5e-2)
    assert not net.training
