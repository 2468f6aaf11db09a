"""Captions end to end: synthetic captions -> manifest -> train -> eval -> predict; metrics; MSR-VTT / MSVD."""

import csv
import json

import cv2
import numpy as np
import pytest
import sacrebleu

from videoseq.bench.captions import motion_words, word_accuracies
from videoseq.checkpoint import load_checkpoint
from videoseq.cli import main
from videoseq.config import ConfigError, load_config
from videoseq.errors import InputError
from videoseq.manifest import read_manifest
from videoseq.metrics import bleu_scores, caption_metrics
from videoseq.prepare import manifest_from_msrvtt, manifest_from_msvd
from videoseq.synth import MOTION_WORDS, write_gesture_dataset


@pytest.fixture(scope="session")
def captioned(tmp_path_factory):
    return write_gesture_dataset(tmp_path_factory.mktemp("captioned"), per_class=4, seed=2, frames=12, size=48,
                                 groups=4, test_groups=(4,), captions=True, progress=False)


def train(captioned, tmp_path_factory, task, decoder="", caption=""):
    config = tmp_path_factory.mktemp("cfg") / "caption.yaml"
    config.write_text(
        "data: {frames: 4, size: 32, num_workers: 0, flip: false, color_jitter: 0}\n"
        "model: {backbone: resnet18, stage: layer1, head: gru, head_args: {hidden: 16},\n"
        f"        task: {task}, decoder: {{embed: 8, hidden: 16, attention: 8{decoder}}}}}\n"
        "train: {epochs: 1, batch_size: 9}\n"
        f"caption: {{beam: 2, max_words: 8, scheduled_sampling: 0.2{caption}}}\n"
    )
    run = tmp_path_factory.mktemp("run")
    assert main(["train", str(config), "--out", str(run), "--set", f"data.manifest={captioned / 'manifest.csv'}"]) == 0
    return run


@pytest.fixture(scope="session")
def caption_run(captioned, tmp_path_factory):
    return train(captioned, tmp_path_factory, "caption")


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_synth_writes_a_caption_manifest_with_several_rows_per_video(captioned):
    manifest = read_manifest(captioned / "manifest.csv")
    captions_csv = rows_of(captioned / "captions.csv")
    assert len(manifest.rows) == len(captions_csv)
    videos, refs = manifest.videos("train"), manifest.captions("train")
    assert len(videos) == len(refs) == 27 and all(2 <= len(r) <= 5 for r in refs)
    for (path, label), texts in zip(videos, refs):
        assert all(MOTION_WORDS[manifest.classes[label]] in t for t in texts), (path, texts)
    assert len(manifest.videos("test")) == 9


def test_every_reference_names_its_motion_for_the_caption_benchmark(captioned):
    manifest = read_manifest(captioned / "manifest.csv")
    for split in ("train", "test"):
        for (_, label), texts in zip(manifest.videos(split), manifest.captions(split)):
            motion = MOTION_WORDS[manifest.classes[label]]
            assert all(motion_words(t) == {motion} for t in texts), texts
    assert motion_words("a red square sinks downward") == {"down"}
    assert motion_words("an arrow turns counter-clockwise") == {"counter-clockwise"}


def test_caption_benchmark_counts_captions_naming_exactly_the_right_motion_shape_and_colour(tmp_path):
    path = tmp_path / "captions.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "caption", "references"])
        writer.writerow(["a.avi", "MoveUp", "a red star floats upward", "the red star moves up | a red star rises up"])
        writer.writerow(["b.avi", "Grow", "the blue cross grows", "a green square grows | the green square grows"])
        writer.writerow(["c.avi", "Static", "a red star or square sits still", "a red star stays still | a red star"])
    accuracy, clips = word_accuracies(path)
    # a.avi is right on all three; b.avi names the motion only; c.avi names two shapes
    assert clips == 3
    assert accuracy == {"motion": 1.0, "shape": 1 / 3, "colour": 2 / 3}


def test_caption_checkpoint_is_self_describing(caption_run):
    assert (caption_run / "vocab.txt").is_file()
    payload = load_checkpoint(caption_run / "best.pt")  # weights_only=True underneath
    assert payload["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and "square" in payload["vocab"]
    header = rows_of(caption_run / "metrics.csv")[0]
    assert 0.0 <= float(header["val_bleu4"]) <= 1.0


def test_eval_writes_captions_with_references_and_bleu(caption_run, tmp_path):
    assert main(["eval", str(caption_run / "best.pt"), "--out", str(tmp_path / "eval"), "--workers", "0",
                 "--beam", "2"]) == 0
    rows = rows_of(tmp_path / "eval" / "predictions.csv")
    assert len(rows) == 9 and set(rows[0]) == {"path", "label", "caption", "references"}
    assert all(len(r["references"].split(" | ")) >= 2 for r in rows)
    metrics = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert metrics["caption"]["beam"] == 2 and 0.0 <= metrics["caption"]["bleu4"] <= metrics["caption"]["bleu1"] <= 1


def test_predict_adds_a_caption_column_from_the_checkpoint_alone(caption_run, captioned, tmp_path):
    alone = tmp_path / "alone.pt"
    alone.write_bytes((caption_run / "best.pt").read_bytes())  # no config.yaml beside it
    clip = sorted((captioned / "videos" / "MoveLeft").glob("*.avi"))[0]
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 120, np.uint8))  # an image is a one-frame clip
    out = tmp_path / "pred.csv"
    assert main(["predict", str(alone), str(clip), str(image), "--csv", str(out), "--beam", "2"]) == 0
    rows = rows_of(out)
    assert list(rows[0]) == ["path", "caption", "error"]
    assert [r["error"] for r in rows] == ["", ""]
    words = set(load_checkpoint(alone)["vocab"])
    assert all(set(r["caption"].split()) <= words for r in rows)


def test_task_both_classifies_and_captions(captioned, tmp_path_factory, tmp_path):
    run = train(captioned, tmp_path_factory, "both")
    clip = sorted((captioned / "videos" / "Grow").glob("*.avi"))[0]
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run / "best.pt"), str(clip), "--csv", str(out), "--topk", "2", "--beam", "1"]) == 0
    assert list(rows_of(out)[0]) == ["path", "label_1", "score_1", "label_2", "score_2", "caption", "error"]
    assert main(["eval", str(run / "best.pt"), "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    metrics = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert "top1" in metrics["video"] and "bleu4" in metrics["caption"]
    assert (tmp_path / "eval" / "captions.csv").is_file()


def test_decoder_on_the_class_posterior_trains_and_predicts_from_the_checkpoint_alone(captioned, tmp_path_factory,
                                                                                       tmp_path):
    run = train(captioned, tmp_path_factory, "both", decoder=", class_posterior: true",
                caption=", all_references: true, length_penalty: 1.0")
    payload = load_checkpoint(run / "best.pt")
    assert payload["config"]["model"]["decoder"]["class_posterior"] is True
    assert payload["model"]["decoder.init_h.weight"].shape[1] == 16 + 64 + len(payload["classes"])
    alone = tmp_path / "alone.pt"
    alone.write_bytes((run / "best.pt").read_bytes())  # no config.yaml beside it
    clip = sorted((captioned / "videos" / "Shrink").glob("*.avi"))[0]
    out = tmp_path / "pred.csv"
    assert main(["predict", str(alone), str(clip), "--csv", str(out), "--beam", "2"]) == 0
    row = rows_of(out)[0]
    assert row["error"] == "" and row["label_1"] in payload["classes"]
    assert set(row["caption"].split()) <= set(payload["vocab"])


def test_caption_task_without_captions_is_a_clear_error(gestures, tmp_path):
    config = load_config(None, [f"data.root={gestures / 'videos'}", "data.format=ucf101",
                                f"data.splits_dir={gestures / 'splits'}", "model.task=caption"])
    from videoseq.engine.trainer import fit

    with pytest.raises(InputError, match="needs captions"):
        fit(config, tmp_path / "run")


def test_config_validates_task_and_caption_keys():
    with pytest.raises(ConfigError, match="model.task"):
        load_config(None, ["model.task=describe"])
    with pytest.raises(ConfigError, match="caption.beam"):
        load_config(None, ["caption.beam=0"])
    with pytest.raises(ConfigError, match="class_posterior"):
        load_config(None, ["model.task=caption", "model.decoder={class_posterior: true}"])
    with pytest.raises(ConfigError, match="unknown config key caption.bean"):
        load_config(None, ["caption.bean=2"])
    assert load_config(None, []).model.task == "classify"


def test_bleu_matches_sacrebleu_and_handles_uneven_reference_counts():
    hyps = ["a red square moves left", "the blue circle grows"]
    refs = [["a red square moves left", "the red square slides to the left"], ["a blue circle grows bigger"]]
    scores = bleu_scores(hyps, refs)
    direct = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [refs[0][1], None]], tokenize="none").score / 100
    assert scores["bleu4"] == pytest.approx(direct)
    assert bleu_scores(["a b c d e"], [["a b c d e"]])["bleu4"] == pytest.approx(1.0)
    assert scores["bleu1"] >= scores["bleu2"] >= scores["bleu3"] >= scores["bleu4"]
    metrics = caption_metrics(hyps, refs)
    assert set(metrics) >= {"bleu1", "bleu4"} and ("cider_d" in metrics or "cider_d" in metrics["missing"])


def test_prepare_msrvtt_reads_videos_and_sentences(tmp_path):
    root = tmp_path / "MSRVTT"
    (root / "videos").mkdir(parents=True)
    for vid in ("video0", "video1", "video2"):
        (root / "videos" / f"{vid}.mp4").write_bytes(b"")
    info = {"videos": [{"video_id": "video0", "category": 9, "split": "train"},
                       {"video_id": "video1", "category": 3, "split": "validate"},
                       {"video_id": "video2", "category": 9, "split": "test"},
                       {"video_id": "video3", "category": 1, "split": "test"}],
            "sentences": [{"video_id": "video0", "caption": "a man is singing"},
                          {"video_id": "video0", "caption": "someone sings"},
                          {"video_id": "video1", "caption": "a car drives"},
                          {"video_id": "video2", "caption": "a cat plays"}]}
    (root / "videodatainfo.json").write_text(json.dumps(info))
    manifest = manifest_from_msrvtt(root)
    assert manifest.classes == ["category_01", "category_03", "category_09"]
    assert manifest.captions("train") == [["a man is singing", "someone sings"]]
    assert [p.endswith("video1.mp4") for p, _ in manifest.videos("val")] == [True]
    assert any("video3" in n for n in manifest.notes)


def test_prepare_msvd_reads_english_descriptions_in_split_order(tmp_path):
    root = tmp_path / "YouTubeClips"
    root.mkdir()
    lines = ["VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description"]
    for k in range(3):
        (root / f"vid{k}_1_5.avi").write_bytes(b"")
        lines += [f"vid{k},1,5,1,clean,10,English,a dog runs {k}", f"vid{k},1,5,2,clean,10,German,ein Hund {k}",
                  f"vid{k},1,5,3,clean,10,English,a dog is running {k}"]
    (tmp_path / "MSR Video Description Corpus.csv").write_text("\n".join(lines) + "\n")
    manifest = manifest_from_msvd(root)
    assert manifest.classes == ["clip"]
    assert manifest.captions("train") == [[f"a dog runs {k}", f"a dog is running {k}"] for k in range(3)]
    assert any("CSV order" in n for n in manifest.notes)
