"""Object slots: delexicalising training comments, the slot prompt, filling slots with agreeing
particles, and a tokenizer that keeps slots whole."""

from __future__ import annotations

from inference.commenter.data import CommentPair
from inference.commenter.slots import (
    SLOT_TOKENS,
    delexicalise,
    delexicalise_comment,
    english_names,
    fill,
    slot_prompt,
)
from inference.commenter.tokenizer import CommentTokenizer


def test_mentions_of_the_given_objects_become_slots_in_label_order() -> None:
    pair = CommentPair(
        ("슬픔", "트럭", "차", "바퀴"),
        "슬픈 모습이네요... 차가 고장났나 봐요? 트럭은 어떤 용도로 쓰는 건가요? 힘내세요! 😊",
    )
    slotted = delexicalise(pair, english_names())
    assert slotted.labels == ("슬픔", "<obj1> 트럭", "<obj2> 차", "<obj3> 바퀴")
    assert (
        slotted.comment
        == "슬픈 모습이네요... <obj2>가 고장났나 봐요? <obj1>은 어떤 용도로 쓰는 건가요? 힘내세요! 😊"
    )


def test_only_whole_nouns_are_slotted_and_longer_names_win() -> None:
    names = [["배", "Boat"], ["야구 글러브", "Baseball glove"], ["글러브", "Glove"]]
    text = "배경이 멋져요! 배가 떠 있네요. 야구글러브와 글러브, 그리고 boat 🚤"
    assert (
        delexicalise_comment(text, names)
        == "배경이 멋져요! <obj1>가 떠 있네요. <obj2>와 <obj3>, 그리고 <obj1> 🚤"
    )


def test_emotions_stay_and_objects_get_their_slot_in_the_prompt() -> None:
    # Emotions first in the data's order, then the objects as given, each after its slot.
    assert slot_prompt(["케이크", "분노", "기쁨", "박쥐 (동물)"]) == (
        "기쁨",
        "분노",
        "<obj1> 케이크",
        "<obj2> 박쥐",
    )


def test_fill_makes_particles_and_the_copula_agree_with_the_word() -> None:
    cases = {
        ("<obj1>이 정말 귀여워요!", "케이크"): "케이크가 정말 귀여워요!",
        ("<obj1>가 정말 귀여워요!", "고양이"): "고양이가 정말 귀여워요!",
        ("<obj1>가 멋져요", "헤드폰"): "헤드폰이 멋져요",
        ("<obj1>를 들고", "우산"): "우산을 들고",
        ("<obj1>은요?", "모자"): "모자는요?",
        ("<obj1>와 함께", "책상"): "책상과 함께",
        ("<obj1>로 가요", "우산"): "우산으로 가요",
        ("<obj1>으로 가요", "연필"): "연필로 가요",
        ("<obj1>이나 <obj2>나", "빵 우유"): "빵이나 우유나",
        ("<obj1>랑 놀아요", "고양이"): "고양이랑 놀아요",
        ("<obj1>랑 놀아요", "책"): "책이랑 놀아요",
        ("멋진 <obj1>이네요!", "나무"): "멋진 나무네요!",
        ("멋진 <obj1>네요!", "헤드폰"): "멋진 헤드폰이네요!",
        ("<obj1>예요", "책"): "책이에요",
        ("<obj1>이에요", "나무"): "나무예요",
        ("<obj1>의 색이 예뻐요", "모자"): "모자의 색이 예뻐요",
        ("<obj1> 색상이 예뻐요", "스카프"): "스카프 색상이 예뻐요",
    }
    for (text, objects), expected in cases.items():
        assert fill(text, objects.split()) == expected, text
    # A parenthetical qualifier is not read out; a slot without an object makes the text unusable.
    assert fill("<obj1>가 날아요", ["박쥐 (동물)"]) == "박쥐가 날아요"
    assert fill("<obj2>가 멋져요", ["고양이"]) is None


def test_tokenizer_keeps_slots_whole_and_spacing_exact() -> None:
    texts = ["<obj1>이 정말 멋지네요! <obj2>와 잘 어울려요. 🍃", "정말 <obj1>가 예뻐요", "기쁨"] * 20
    tokenizer = CommentTokenizer.train(texts, vocab_size=120, slot_tokens=SLOT_TOKENS)
    for text in texts[:3]:
        ids = tokenizer.encode_comment(text, max_length=64)
        assert tokenizer.decode(ids) == text
    slot_ids = {tokenizer._tokenizer.token_to_id(token) for token in SLOT_TOKENS}
    assert None not in slot_ids and len(slot_ids) == len(SLOT_TOKENS)
    assert tokenizer.encode_labels(["<obj1> 케이크"], max_length=16)[0] in slot_ids
