"""`reelrt serve` as a real process on loopback, called with real clients: the openai package,
tritonclient.http, and raw http.client for what no client library would send."""
from __future__ import annotations

import base64
import http.client
import json
import threading
import time

import cv2
import numpy as np
import openai
import pytest
import tritonclient.http as triton

from reelrt.runtime import load
from tests.serving import metric, request, running_server

BINARY_HEAD = b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 99}}]}'
PROMPTS = [f"Quest {i}: the innkeeper says" + " again" * i for i in range(9)]


@pytest.fixture(scope="module")
def server(gpt2_tiny_bundle, tiny_cnn_bundle, tiny_text_bundle):
    with running_server(f"npc={gpt2_tiny_bundle}", f"posters={tiny_cnn_bundle}", f"reviews={tiny_text_bundle}",
                        "--parallel", "4", "--threads", "1", "--max-body-bytes", "200000") as port:
        yield port


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def generator(gpt2_tiny_bundle):
    return load(gpt2_tiny_bundle, threads=1)


def test_models_lists_every_bundle(client):
    assert {m.id for m in client.models.list().data} == {"npc", "posters", "reviews"}


def test_completion_is_textgenerator_answer(client, generator):
    greedy = client.completions.create(model="npc", prompt=PROMPTS[0], max_tokens=24)
    assert greedy.choices[0].text == generator.generate(PROMPTS[0], max_new_tokens=24)
    assert greedy.usage.prompt_tokens == len(generator.tokenizer.encode(PROMPTS[0]).ids)
    sampled = client.completions.create(model="npc", prompt=PROMPTS[1], max_tokens=20, temperature=0.9, top_p=0.8,
                                        seed=5, extra_body={"top_k": 40})
    assert sampled.choices[0].text == generator.generate(PROMPTS[1], max_new_tokens=20, temperature=0.9, top_p=0.8,
                                                         top_k=40, seed=5)
    ids = generator.tokenizer.encode(PROMPTS[2]).ids
    by_ids = client.completions.create(model="npc", prompt=ids, max_tokens=16)
    assert by_ids.choices[0].text == generator.generate(PROMPTS[2], max_new_tokens=16)


def test_stream_pieces_join_to_the_answer_and_stop_strings_cut(client, generator):
    whole = generator.generate(PROMPTS[3], max_new_tokens=30)
    chunks = list(client.completions.create(model="npc", prompt=PROMPTS[3], max_tokens=30, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    stop = whole[5:7]
    cut = list(client.completions.create(model="npc", prompt=PROMPTS[3], max_tokens=30, stream=True, stop=[stop]))
    assert "".join(c.choices[0].text for c in cut) == generator.generate(PROMPTS[3], max_new_tokens=30, stop=[stop])
    assert cut[-1].choices[0].finish_reason == "stop"


def test_greedy_answers_are_the_same_alone_and_among_eight_others(client, generator):
    alone = [generator.generate(p, max_new_tokens=40) for p in PROMPTS]
    together: list[str | None] = [None] * len(PROMPTS)

    def ask(i: int) -> None:
        stream = client.completions.create(model="npc", prompt=PROMPTS[i], max_tokens=40, stream=True)
        together[i] = "".join(c.choices[0].text for c in stream)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_a_prompt_that_starts_like_the_last_one_reuses_its_cache(client, generator):
    persona = "You are Brom, the blacksmith of the village. You speak briefly. The traveller asks:"
    first = client.completions.create(model="npc", prompt=persona + " where is the inn?", max_tokens=8)
    second = client.completions.create(model="npc", prompt=persona + " what do you sell?", max_tokens=8)
    assert second.usage.prompt_tokens_details.cached_tokens >= len(generator.tokenizer.encode(persona).ids) - 1
    assert second.choices[0].text == generator.generate(persona + " what do you sell?", max_new_tokens=8)
    assert first.choices[0].text == generator.generate(persona + " where is the inn?", max_new_tokens=8)


def test_triton_client_classifies_images_frames_and_text(server, tiny_cnn_bundle, tiny_text_bundle):
    c = triton.InferenceServerClient(f"127.0.0.1:{server}")
    assert c.is_server_ready() and c.is_model_ready("posters")
    assert {i["name"] for i in c.get_model_metadata("posters")["inputs"]} == {"image", "frames"}
    frame = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    png = cv2.imencode(".png", frame)[1].tobytes()
    clf = load(tiny_cnn_bundle, threads=1)
    want = clf.classify(frame, top_k=3)

    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([png], dtype=object))  # binary tensor extension (the default)
    result = c.infer("posters", [image], parameters={"top_k": 3})
    assert _labels(result)[0] == [label for label, _ in want]
    np.testing.assert_allclose(result.as_numpy("probabilities")[0], [p for _, p in want], rtol=1e-5)

    frames = triton.InferInput("frames", [2, 40, 60, 3], "UINT8")
    frames.set_data_from_numpy(np.stack([frame, frame]), binary_data=False)  # plain JSON data
    result = c.infer("posters", [frames], parameters={"top_k": 3})
    assert _labels(result)[1] == [label for label, _ in want]

    reviews = load(tiny_text_bundle, threads=1)
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"the cat sat", b"the ship warped"], dtype=object))
    result = c.infer("reviews", [text], parameters={"top_k": 2})
    want = reviews.classify(["the cat sat", "the ship warped"], top_k=2)
    assert _labels(result) == [[label for label, _ in w] for w in want]


def _labels(result) -> list[list[str]]:
    """The "labels" output (JSON BYTES come back as str)."""
    return [[v.decode() if isinstance(v, bytes) else v for v in row] for row in result.as_numpy("labels")]


def test_classify_takes_a_multipart_file_and_json(server, tiny_cnn_bundle):
    frame = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = cv2.imencode(".png", frame)[1].tobytes()
    boundary = "reelrtboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"poster.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = request(server, "POST", "/v1/classify?model=posters&top_k=2", body,
                                {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, answer
    want = load(tiny_cnn_bundle, threads=1).classify(frame, top_k=2)
    assert [p["label"] for p in json.loads(answer)["predictions"]] == [label for label, _ in want]
    status, _, answer = request(server, "POST", "/v1/classify?model=posters",
                                {"image": base64.b64encode(png).decode(), "top_k": 2})
    assert status == 200 and [p["label"] for p in json.loads(answer)["predictions"]] == [label for label, _ in want]
    status, _, answer = request(server, "POST", "/v1/classify?model=reviews", {"text": ["the cat sat"]})
    assert status == 200 and len(json.loads(answer)["predictions"]) == 1


@pytest.mark.parametrize("method, path, body, headers, status, reason", [
    ("POST", "/v1/completions", b"{not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
    ("POST", "/v1/completions", b"[1, 2]", {}, 400, "JSON object"),
    ("POST", "/v1/completions", {"model": "nobody", "prompt": "x"}, None, 404, "no model named"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": ""}, None, 400, "must not be empty"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "max_tokens": -3}, None, 400, "max_tokens"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "temperature": "hot"}, None, 400, "temperature"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "top_p": 0}, None, 400, "top_p"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "n": 0}, None, 400, "n must be a positive int"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "best_of": 3}, None, 400, "best_of=3"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "echo": True, "logprobs": 1}, None, 400, "echo with"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "response_format": {"type": "yaml"}}, None, 400,
     "response_format.type"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "response_format": {"type": "json_schema",
     "json_schema": {"name": "a", "schema": {"type": "object", "minProperties": "x"}}}}, None, 400, "schema"),
    ("POST", "/v1/chat/completions", {"model": "npc", "messages": []}, None, 400, "messages"),
    ("POST", "/v1/chat/completions", {"model": "npc", "messages": [{"role": "wizard", "content": "x"}]}, None, 400,
     "role"),
    ("POST", "/v1/chat/completions", {"model": "npc", "messages": [{"role": "user", "content": "x"}],
                                      "top_logprobs": 2}, None, 400, "needs logprobs"),
    ("GET", "/v1/nowhere", None, None, 404, '"type":"not_found_error"'),
    ("GET", "/v1/chat/completions", None, None, 405, "does not take GET"),
    ("DELETE", "/v2/models/posters", None, None, 405, '{"error":"/v2/models/posters does not take DELETE"}'),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "wat": 1}, None, 400, "unknown parameters"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": [1, 99999]}, None, 400, "token ids"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "x", "stop": [""]}, None, 400, "stop"),
    ("POST", "/v1/completions", {"model": "npc", "prompt": "word " * 300}, None, 400, "context"),
    ("POST", "/v1/completions", {"model": "posters", "prompt": "x"}, None, 400, "image-classification"),
    ("POST", "/v1/completions", b"x" * 300000, {"Content-Type": "application/json"}, 413, "over the limit"),
    ("POST", "/v2/models/posters/infer", {"inputs": []}, None, 400, "exactly one tensor"),
    ("POST", "/v2/models/posters/infer", {"inputs": [{"name": "frames", "datatype": "UINT8", "shape": [2, 2, 3],
                                                      "data": [1, 2]}]}, None, 400, "need 12 ints"),
    ("POST", "/v2/models/posters/infer", {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                                      "data": ["bm90IGFuIGltYWdl"]}]}, None, 400, "could not be decoded"),
    ("POST", "/v2/models/posters/infer", {"inputs": [{"name": "frames", "datatype": "UINT8",
                                                      "shape": [5000, 5000, 3], "data": []}]}, None, 400, "pixels"),
    ("POST", "/v2/models/posters/infer", BINARY_HEAD, {"Inference-Header-Content-Length": str(len(BINARY_HEAD))},
     400, "fit the body"),
    ("POST", "/v2/models/reviews/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                                      "data": ["  "]}]}, None, 400, "text"),
    ("GET", "/v2/models/nobody", None, None, 404, "no model named"),
    ("POST", "/v1/classify?model=posters", b"--x\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 400, ""),
])
def test_bad_requests_get_a_reason_and_the_server_stays_up(server, method, path, body, headers, status, reason):
    got, _, answer = request(server, method, path, body, headers)
    assert got == status, answer
    assert reason in answer.decode()
    assert request(server, "GET", "/v2/health/live")[0] == 200


def test_metrics_are_prometheus_text(server, client):
    client.completions.create(model="npc", prompt="Hello", max_tokens=4)
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert metric(server, "reelrt_requests_total", model="npc", route="completions", code="200") >= 1
    assert metric(server, "reelrt_generated_tokens_total", model="npc") >= 4
    assert metric(server, "reelrt_time_to_first_token_seconds_count", model="npc") >= 1
    assert "reelrt_queue_depth" in body.decode() and "reelrt_tokens_per_second" in body.decode()


def test_full_queue_is_429_with_retry_after_and_disconnect_frees_the_slot(gpt2_tiny_bundle):
    with running_server(f"npc={gpt2_tiny_bundle}", "--parallel", "1", "--max-waiting", "1", "--threads", "1",
                        "--api-key", "sesame") as port:
        auth = {"Authorization": "Bearer sesame", "Content-Type": "application/json"}
        assert request(port, "GET", "/v1/models")[0] == 401
        assert request(port, "GET", "/v1/models", headers=auth)[0] == 200
        long = {"model": "npc", "prompt": "Once", "max_tokens": 240, "ignore_eos": True}
        burst = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(6)]
        for conn in burst:  # all sent before any is read: one runs, one waits, the rest are refused
            conn.request("POST", "/v1/completions", json.dumps(long), auth)
        answers = [conn.getresponse() for conn in burst]
        statuses = sorted(a.status for a in answers)
        assert statuses[0] == 200 and statuses[-1] == 429 and set(statuses) == {200, 429}, statuses
        assert all(a.getheader("Retry-After") == "1" for a in answers if a.status == 429)
        for conn in burst:
            conn.close()

        # the client goes away mid-stream: its slot is freed, the generation cut short. The tiny model
        # may finish 240 tokens before the server sees the socket close, so a few tries are allowed.
        for _ in range(10):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/v1/completions", json.dumps({**long, "stream": True}), auth)
            assert conn.getresponse().readline().startswith(b"data: ")
            conn.close()
            time.sleep(0.5)
            if metric(port, "reelrt_finished_generations", auth, model="npc", reason="cancelled") >= 1:
                break
        assert metric(port, "reelrt_finished_generations", auth, model="npc", reason="cancelled") >= 1
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sesame", max_retries=0)
        assert client.completions.create(model="npc", prompt="Hi", max_tokens=3).usage.completion_tokens == 3
