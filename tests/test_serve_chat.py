"""/v1/chat/completions, n, logprobs, echo and structured output, called with the real openai
client against `reelrt serve` on loopback; answers held to TextGenerator's in-process ones."""
from __future__ import annotations

import json
import threading

import jsonschema
import openai
import pytest

from reelrt.runtime import load
from reelrt.runtime.tasks.generation.chat import DEFAULT_CHAT_STOP, chat_template, render
from tests.serving import running_server

MESSAGES = [{"role": "system", "content": "You are Brom, the blacksmith."},
            {"role": "user", "content": "What do you sell?"}]
NPC = {"type": "object", "additionalProperties": False, "required": ["mood", "line", "stats", "items"],
       "properties": {"mood": {"enum": ["angry", "calm", "sly"]},
                      "line": {"type": "string", "maxLength": 24},
                      "stats": {"type": "object", "additionalProperties": False, "required": ["hp", "gold"],
                                "properties": {"hp": {"type": "integer", "minimum": 0, "maximum": 999},
                                               "gold": {"type": "integer", "minimum": 0, "maximum": 99}}},
                      "items": {"type": "array", "maxItems": 3, "items": {"enum": ["sword", "shield", "nail"]}}}}


@pytest.fixture(scope="module")
def client(gpt2_tiny_bundle):
    """The openai package's client of a server with eight slots."""
    with running_server(f"npc={gpt2_tiny_bundle}", "--parallel", "8", "--threads", "1") as port:
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def generator(gpt2_tiny_bundle):
    return load(gpt2_tiny_bundle, threads=1)


def _prompt(generator, messages=MESSAGES) -> str:
    return render(chat_template(generator.manifest), messages, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def test_chat_answers_what_the_generator_gives_for_the_templated_prompt(client, generator):
    prompt = _prompt(generator)
    assert prompt.endswith("User: What do you sell?\nAssistant:") and prompt.startswith("You are Brom")
    want = generator.generate(prompt, max_new_tokens=24, stop=[DEFAULT_CHAT_STOP])
    answer = client.chat.completions.create(model="npc", messages=MESSAGES, max_tokens=24)
    assert answer.object == "chat.completion" and answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == want
    assert answer.usage.prompt_tokens == len(generator.encode(prompt))
    newer = client.chat.completions.create(model="npc", messages=MESSAGES, max_completion_tokens=24)
    assert newer.choices[0].message.content == want

    chunks = list(client.chat.completions.create(model="npc", messages=MESSAGES, max_tokens=24, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens


def test_n_choices_share_one_prefill_and_seed_each_choice(client, generator):
    prompt = "The quartermaster counts the arrows and says"
    ids = generator.encode(prompt)
    greedy = client.completions.create(model="npc", prompt=prompt, max_tokens=12, n=4)
    assert [c.index for c in greedy.choices] == [0, 1, 2, 3]
    assert {c.text for c in greedy.choices} == {generator.generate(prompt, max_new_tokens=12)}
    # the three later choices copy the first one's cache: all but the last prompt token
    assert greedy.usage.prompt_tokens_details.cached_tokens >= 3 * (len(ids) - 1)
    sampled = client.chat.completions.create(model="npc", messages=MESSAGES, max_tokens=10, n=3, temperature=1.0,
                                             seed=40)
    want = [generator.generate(_prompt(generator), max_new_tokens=10, temperature=1.0, seed=40 + j,
                               stop=[DEFAULT_CHAT_STOP]) for j in range(3)]
    assert [c.message.content for c in sampled.choices] == want


def test_logprobs_are_the_models_and_echo_repeats_the_prompt(client, generator):
    prompt = "The ferryman asks for"
    answer = client.completions.create(model="npc", prompt=prompt, max_tokens=8, logprobs=3)
    lp = answer.choices[0].logprobs
    assert "".join(lp.tokens) == answer.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(top) <= 3 and chosen <= 0   # keyed by text: ids that decode alike share a key
        assert chosen == pytest.approx(max(top.values()))   # greedy: the chosen token is the likeliest
    chat = client.chat.completions.create(model="npc", messages=MESSAGES, max_tokens=6, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob == pytest.approx(t.top_logprobs[0].logprob) for t in content)
    echoed = client.completions.create(model="npc", prompt=prompt, max_tokens=8, echo=True)
    assert echoed.choices[0].text == prompt + answer.choices[0].text
    streamed = list(client.completions.create(model="npc", prompt=prompt, max_tokens=8, echo=True, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == prompt + answer.choices[0].text


def test_a_hundred_json_schema_answers_parse_and_validate(client, generator):
    """Random weights: only the constraint makes these answers JSON at all."""
    answers: list = [None] * 100

    def ask(first: int) -> None:
        for i in range(first, 100, 8):
            kind = ("completions", "chat")[i % 2]
            fmt = {"type": "json_schema", "json_schema": {"name": "npc", "schema": NPC, "strict": True}}
            if kind == "chat":
                reply = client.chat.completions.create(model="npc", messages=MESSAGES, max_tokens=200,
                                                       temperature=1.0, seed=i, response_format=fmt)
                answers[i] = (reply.choices[0].message.content, reply.choices[0].finish_reason)
            else:
                reply = client.completions.create(model="npc", prompt="Brom:", max_tokens=200, temperature=1.0,
                                                  seed=i, extra_body={"response_format": fmt})
                answers[i] = (reply.choices[0].text, reply.choices[0].finish_reason)
    threads = [threading.Thread(target=ask, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (text, finish) in enumerate(answers):
        assert finish == "stop", (i, text)
        try:
            jsonschema.validate(json.loads(text), NPC)
        except ValueError as e:
            raise AssertionError(f"request {i}: {text!r}") from e
    assert len({text for text, _ in answers}) > 50   # sampled, not one answer repeated
    # any object: a random model may write one key forever; what it wrote is an object's start
    any_object = client.chat.completions.create(model="npc", messages=MESSAGES, max_tokens=200, temperature=1.0,
                                                seed=1, response_format={"type": "json_object"}).choices[0]
    assert any_object.message.content.startswith('{"')
    if any_object.finish_reason == "stop":
        assert isinstance(json.loads(any_object.message.content), dict)


def test_generate_takes_a_json_schema_or_a_grammar_in_process(generator):
    for seed in range(5):
        text = generator.generate("Brom:", max_new_tokens=200, temperature=1.0, seed=seed, json_schema=NPC)
        jsonschema.validate(json.loads(text), NPC)
    assert "".join(generator.stream("Brom:", max_new_tokens=200, temperature=1.0, seed=3, json_schema=NPC)) == \
        generator.generate("Brom:", max_new_tokens=200, temperature=1.0, seed=3, json_schema=NPC)
    mood = generator.generate("Brom is", max_new_tokens=20, temperature=1.0, seed=2,
                              grammar='start: "angry" | "calm" | "sly"')
    assert mood in ("angry", "calm", "sly")
