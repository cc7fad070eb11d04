"""The SSE parser on raw bytes: event boundaries anywhere, the template fast path, and every error shape."""

import json

import pytest

from engine.endpoint.sse import StreamParser
from engine.records import ErrorClass


def chat_chunk(content: str | None = None, *, finish: str | None = None, created: int = 1, rid: str = "c-1",
               **delta: object) -> bytes:
    d = dict(delta)
    if content is not None:
        d["content"] = content
    obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": "m",
           "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def usage_chunk(prompt: int, completion: int) -> bytes:
    obj = {"id": "c-1", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def stream(texts: list[str]) -> bytes:
    body = chat_chunk("", role="assistant")
    body += b"".join(chat_chunk(t) for t in texts)
    body += chat_chunk(None, finish="length") + usage_chunk(7, len(texts)) + b"data: [DONE]\n\n"
    return body


TEXTS = [" the", " quick", ' "quoted"', " caf\u00e9", " back\\slash", " fox", "", " end"]


def parse(body: bytes, cut: int | None = None) -> StreamParser:
    """Feed ``body`` in pieces of ``cut`` bytes (None: all at once), stamping piece i with i."""
    p = StreamParser()
    pieces = [body] if cut is None else [body[i : i + cut] for i in range(0, len(body), cut)]
    for i, piece in enumerate(pieces):
        p.feed(piece, i)
    p.finish(len(pieces))
    return p


@pytest.mark.parametrize("cut", [None, 1, 3, 17, 64])
def test_any_read_boundaries_give_the_same_result(cut):
    p = parse(stream(TEXTS), cut)
    assert p.error is None
    assert p.chunks == sum(1 for t in TEXTS if t)  # the empty content chunk and the role chunk do not count
    assert p.prompt_tokens == 7 and p.completion_tokens == len(TEXTS)
    assert p.response_id == "c-1"
    assert p.done and p.finished and p.complete
    assert len(p.times) == p.chunks and p.times == sorted(p.times)


def test_crlf_line_ends_split_anywhere():
    body = stream(TEXTS).replace(b"\n", b"\r\n")
    for cut in (None, 1, 2, 5):
        p = parse(body, cut)
        assert p.error is None and p.chunks == 7 and p.done, cut


def test_first_token_is_the_first_non_empty_content_or_reasoning():
    body = chat_chunk("", role="assistant") + chat_chunk(None, reasoning_content="hmm") + chat_chunk("x")
    p = StreamParser()
    p.feed(body[: len(chat_chunk("", role="assistant"))], 10)
    assert p.first_ns is None
    p.feed(body[len(chat_chunk("", role="assistant")) :], 20)
    assert p.first_ns == 20 and p.chunks == 2


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_fields_count_as_content(field):
    p = parse(chat_chunk(None, **{field: "think"}) + chat_chunk(None, **{field: "more"}) + b"data: [DONE]\n\n")
    assert p.chunks == 2 and p.error is None


def test_completions_text_and_multiline_data_and_comments():
    def cmpl(text: str) -> bytes:
        return json.dumps({"id": "cmpl-1", "choices": [{"index": 0, "text": text, "finish_reason": None}]}).encode()

    body = b": keep-alive\n\n" + b"data: " + cmpl("a") + b"\n\n" + b"event: x\ndata:" + cmpl("b") + b"\n\n"
    body += b"data: " + cmpl("c") + b"\n\ndata: [DONE]\n\n"
    p = parse(body, 5)
    assert p.chunks == 3 and p.response_id == "cmpl-1" and p.done


def test_template_falls_back_when_bytes_around_the_content_change():
    # a server whose "created" ticks over mid-stream: still counted (by the full parse), then the new template
    body = chat_chunk("a", created=1) + chat_chunk("b", created=1) + chat_chunk("c", created=2)
    body += chat_chunk("d", created=2) + chat_chunk('e"f', created=2) + chat_chunk(None, finish="stop", created=2)
    p = parse(body)
    assert p.chunks == 5 and p.finished and p.error is None


def test_a_chunk_with_finish_reason_and_content_is_still_content():
    p = parse(chat_chunk("a") + chat_chunk("b", finish="stop"))
    assert p.chunks == 2 and p.finished


@pytest.mark.parametrize(
    ("bad", "cls"),
    [
        (b'data: {"id": "c-1", "choices": [{"delta": {"content": "x"\n\n', ErrorClass.MALFORMED),
        (b"data: [1, 2]\n\n", ErrorClass.MALFORMED),
        (b'data: {"id": "c-1", "choices": {"0": 1}}\n\n', ErrorClass.MALFORMED),
        (b'data: {"id": "c-1", "choices": [{"delta": "text"}]}\n\n', ErrorClass.MALFORMED),
        (b'data: {"id": "c-1", "choices": [{"delta": {"content": 5}}]}\n\n', ErrorClass.MALFORMED),
        (b'data: {"id": "c-1", "object": "x"}\n\n', ErrorClass.MALFORMED),
        (b'data: {"error": {"message": "engine died", "code": 500}}\n\n', ErrorClass.HTTP_5XX),
        (b'data: {"error": {"message": "slow down", "code": 429}}\n\n', ErrorClass.HTTP_429),
    ],
)
def test_bad_chunks_are_classified(bad, cls):
    p = parse(chat_chunk("a") + chat_chunk("b") + bad + chat_chunk("c"))
    assert p.error is not None and p.error[0] is cls
    assert "\n" not in p.error[1]
    assert p.chunks == 2  # parsing stops at the bad chunk


def test_malformed_chunk_that_mimics_the_template_is_not_counted_blindly():
    good = chat_chunk("a") + chat_chunk("b")
    # same prefix and suffix as the template, but the middle is two strings: invalid JSON
    forged = chat_chunk("x").replace(b'"x"', b'"x""y"')
    p = parse(good + forged)
    assert p.chunks == 2 and p.error is not None and p.error[0] is ErrorClass.MALFORMED


def test_stream_without_done_or_finish_is_incomplete():
    p = parse(chat_chunk("a") + chat_chunk("b"))
    assert p.chunks == 2 and not p.complete


def test_last_event_without_blank_line_still_counts():
    p = parse(chat_chunk("a") + b"data: [DONE]")
    assert p.done and p.chunks == 1


def test_times_can_be_skipped():
    p = StreamParser(keep_times=False)
    p.feed(stream(["a", "b"]), 5)
    assert p.times is None and p.chunks == 2 and p.first_ns == 5


def parse_events(body: bytes) -> StreamParser:
    """Feed one whole event per read (the commonest read, which takes the one-event fast path), read i stamped i."""
    p = StreamParser()
    events = [e + b"\n\n" for e in body.split(b"\n\n") if e]
    for i, event in enumerate(events):
        p.feed(event, i)
    p.finish(len(events))
    return p


def test_one_event_per_read_counts_what_the_full_parse_counts():
    body = stream(TEXTS)
    whole, each = parse(body), parse_events(body)
    assert (each.chunks, each.prompt_tokens, each.completion_tokens, each.complete, each.error) == (
        whole.chunks, whole.prompt_tokens, whole.completion_tokens, whole.complete, whole.error)
    # every content chunk is stamped with the read that brought it: the role chunk is read 0
    assert each.times == [i + 1 for i, t in enumerate(TEXTS) if t]


def test_one_event_per_read_still_catches_forgeries_and_template_changes():
    forged = chat_chunk("x").replace(b'"x"', b'"x""y"')
    p = parse_events(chat_chunk("a") + chat_chunk("b") + forged)
    assert p.chunks == 2 and p.error is not None and p.error[0] is ErrorClass.MALFORMED
    body = chat_chunk("a", created=1) + chat_chunk("b", created=1) + chat_chunk("c", created=2)
    body += chat_chunk('e"f', created=2) + chat_chunk("d\\n", created=2) + chat_chunk(None, finish="stop", created=2)
    p = parse_events(body)
    assert p.chunks == 5 and p.finished and p.error is None
    # two template events in one read are two chunks, not one
    p = StreamParser()
    p.feed(chat_chunk("a"), 1)
    assert p.feed(chat_chunk("b") + chat_chunk("c"), 2) == 2 and p.times == [1, 2, 2]
