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
