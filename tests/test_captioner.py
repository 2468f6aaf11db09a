"""The captioner: shapes, gradients, teacher forcing vs stepping, a loss that falls."""

import pytest
import torch

from videoseq.models import build_captioner, build_model
from videoseq.text import BOS_ID, EOS_ID, PAD_ID

SPECIALS = {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID}


def tiny(head="gru", task="both", cell="gru", **head_args):
    torch.manual_seed(0)
    stage = "layer2" if head == "convlstm" else "layer1"
    classifier = build_model(backbone="resnet18", head=head, num_classes=3, stage=stage,
                             head_args=head_args or {"hidden": 16})
    return build_captioner(classifier, task=task, vocab_size=11, special_ids=SPECIALS,
                           decoder_args={"cell": cell, "embed": 8, "hidden": 16, "attention": 8, "dropout": 0.0})


@pytest.mark.parametrize("head,cell", [("gru", "gru"), ("convlstm", "lstm"), ("mean", "gru"), ("lstm", "lstm")])
def test_shapes_and_a_gradient_on_every_trainable_parameter(head, cell):
    model = tiny(head, "both", cell, **({"dropout": 0.0} if head == "mean" else {"hidden": 8}))
    clips = torch.randn(2, 3, 3, 32, 32)  # (B, T, C, H, W)
    inputs = torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 8, PAD_ID, PAD_ID]])
    logits, words = model.forward_both(clips, inputs)
    assert logits.shape == (2, 3) and words.shape == (2, 4, 11)
    (logits.sum() + words.sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert missing == [] or all(n.startswith("decoder.embed") for n in missing), missing


def test_teacher_forcing_matches_step_by_step_decoding():
    model = tiny().eval()
    clips = torch.randn(2, 3, 3, 32, 32)
    inputs = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 8]])
    memory = model.encode(clips)  # (B, T, E)
    forced = model.decoder(memory, inputs)  # (B, L, V)
    state = model.decoder.init_state(memory)
    for t in range(inputs.shape[1]):
        logits, state = model.decoder.step_logits(inputs[:, t], state)
        assert torch.allclose(logits, forced[:, t], atol=1e-5)


def test_caption_only_model_gives_no_class_scores_and_generates():
    model = tiny(task="caption").eval()
    clips = torch.randn(2, 3, 3, 32, 32)
    with pytest.raises(ValueError, match="caption only"):
        model(clips)
    greedy = model.generate(clips, beam=1, max_len=5)
    assert len(greedy) == 2 and all(len(s) <= 5 and EOS_ID not in s for s in greedy)
    assert model.generate(clips, beam=1, max_len=5) == greedy
    assert len(model.generate(clips, beam=3, max_len=5)) == 2


def test_unknown_decoder_keys_and_tasks_are_errors():
    classifier = build_model(backbone="resnet18", head="gru", num_classes=2, stage="layer1")
    with pytest.raises(ValueError, match="valid keys"):
        build_captioner(classifier, task="caption", vocab_size=9, special_ids=SPECIALS, decoder_args={"hiden": 3})
    with pytest.raises(ValueError, match="valid tasks"):
        build_captioner(classifier, task="describe", vocab_size=9, special_ids=SPECIALS)


def test_a_few_teacher_forced_steps_lower_the_word_loss():
    model = tiny(task="caption")
    clips = torch.randn(4, 3, 3, 32, 32)
    ids = torch.tensor([[BOS_ID, 4 + i, 5 + i, EOS_ID] for i in range(4)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        _, words = model.forward_both(clips, ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(words.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def conditioned(cell="gru"):
    torch.manual_seed(0)
    classifier = build_model(backbone="resnet18", head="gru", num_classes=3, stage="layer1", head_args={"hidden": 16})
    return build_captioner(classifier, task="both", vocab_size=11, special_ids=SPECIALS,
                           decoder_args={"cell": cell, "embed": 8, "hidden": 16, "attention": 8, "dropout": 0.0,
                                         "class_posterior": True})


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_task_both_decoder_reads_the_class_posterior(cell):
    model = conditioned(cell).eval()
    assert model.decoder.condition_dim == 3
    clips = torch.randn(2, 3, 3, 32, 32)
    inputs = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 8]])
    logits, memory, posterior = model.encode_for_decoder(clips)
    assert torch.allclose(posterior, logits.softmax(1)) and not posterior.requires_grad
    _, words = model.forward_both(clips, inputs)
    with torch.no_grad():  # the class head now says something else: the words change, the memory does not
        model.head.fc.bias += torch.tensor([5.0, -5.0, 0.0])
    assert torch.allclose(model.encode_for_decoder(clips)[1], memory)
    assert not torch.allclose(model.forward_both(clips, inputs)[1], words, atol=1e-4)
    state = model.decoder.init_state(memory, model.encode_for_decoder(clips)[2])  # stepping = teacher forcing
    forced = model.forward_both(clips, inputs)[1]
    for t in range(inputs.shape[1]):
        step, state = model.decoder.step_logits(inputs[:, t], state)
        assert torch.allclose(step, forced[:, t], atol=1e-5)
    assert len(model.generate(clips, beam=2, max_len=4)) == 2


def test_the_caption_loss_does_not_train_the_class_head_through_the_posterior():
    model = conditioned()
    clips = torch.randn(2, 3, 3, 32, 32)
    _, words = model.forward_both(clips, torch.tensor([[BOS_ID, 5], [BOS_ID, 6]]))
    words.sum().backward()
    assert model.head.fc.weight.grad is None
    assert model.decoder.init_h.weight.grad[:, -3:].abs().sum() > 0  # ... yet the decoder learns to read it


def test_class_posterior_needs_task_both():
    classifier = build_model(backbone="resnet18", head="gru", num_classes=2, stage="layer1")
    with pytest.raises(ValueError, match="task=both"):
        build_captioner(classifier, task="caption", vocab_size=9, special_ids=SPECIALS,
                        decoder_args={"class_posterior": True})


def test_several_references_of_one_clip_share_its_encoding():
    model = tiny().eval()
    clips = torch.randn(2, 3, 3, 32, 32)
    inputs = torch.tensor([[BOS_ID, 5, 6], [BOS_ID, 7, 8], [BOS_ID, 9, 4]])
    rows = torch.tensor([0, 0, 1])  # two references of clip 0, one of clip 1
    logits, words = model.forward_both(clips, inputs, rows=rows)
    assert logits.shape == (2, 3) and words.shape == (3, 3, 11)
    _, repeated = model.forward_both(clips[rows], inputs)
    assert torch.allclose(words, repeated, atol=1e-5)


@pytest.mark.parametrize("head", ["gru", "convlstm"])
def test_spatial_decoder_attends_over_every_position_of_every_frame(head):
    torch.manual_seed(0)
    stage = "layer2" if head == "convlstm" else "layer1"
    classifier = build_model(backbone="resnet18", head=head, num_classes=3, stage=stage, head_args={"hidden": 8})
    args = {"embed": 8, "hidden": 16, "attention": 8, "dropout": 0.0}
    frames = build_captioner(classifier, task="both", vocab_size=11, special_ids=SPECIALS, decoder_args=args).eval()
    positions = build_captioner(classifier, task="both", vocab_size=11, special_ids=SPECIALS,
                                decoder_args={**args, "spatial": True}).eval()
    clips = torch.randn(2, 3, 3, 32, 32)  # (B, T, C, H, W)
    side = 32 // classifier.backbone.stride
    sequence, memory = positions.encode_both(clips)
    assert memory.shape == (2, 3 * side * side, 8 + classifier.backbone.feature_dim)
    # the same encoder: the same head sequence and class scores, and the frame memory is the positions' mean
    assert torch.allclose(sequence, frames.encode_both(clips)[0], atol=1e-5)
    assert torch.allclose(positions(clips), frames(clips), atol=1e-5)
    by_frame = memory.unflatten(1, (3, side * side)).mean(dim=2)  # (B, T, E + D)
    assert torch.allclose(by_frame, frames.encode(clips), atol=1e-5)
    logits, words = positions.forward_both(clips, torch.tensor([[BOS_ID, 5], [BOS_ID, 6]]))
    assert logits.shape == (2, 3) and words.shape == (2, 2, 11)
    assert len(positions.generate(clips, beam=2, max_len=4)) == 2
