"""`tern serve` over loopback: the OpenAI client and plain HTTP against the real server and model.

Streaming against whole responses, concurrency and batch invariance, cancellation, the bad-request
table, the admission limit, the API key, draining on SIGTERM, and no leaked KV blocks after many
mixed requests (read from /metrics).
"""
import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tern_server import TernServer

SYSTEM = ("You are a helpful assistant for a museum of computing history. Answer in one or two sentences, "
          "plainly, without lists. ") * 3
QUESTIONS = ["Who built the first mechanical computer?", "What is a transistor?", "Why are vacuum tubes unreliable?",
             "What did Grace Hopper do?", "What is a compiler?", "Name an early home computer.",
             "What is RAM?", "Explain a bit in one sentence."]


@pytest.fixture(scope="module")
def server(default_model):
    s = TernServer(default_model, "--kv-memory", "256M", "--max-running", "32", "--max-queue", "64", "-c", "2048")
    yield s
    assert s.terminate() == 0, "".join(s.log)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


def chat_messages(i):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]


def test_models_health_metrics(server, client):
    models = client.models.list()
    assert [m.id for m in models.data] == [server.model_id]
    status, body = server.request("GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    m = server.metrics()
    for name in ["tern_requests_running", "tern_requests_waiting", "tern_kv_blocks_used", "tern_kv_blocks_cached",
                 "tern_prefix_cache_hit_rate", "tern_preemptions_total", "tern_prompt_tokens_total",
                 "tern_generation_tokens_total", "tern_time_to_first_token_seconds_count",
                 "tern_time_per_output_token_seconds_count"]:
        assert name in m, name


def test_streamed_text_equals_whole(server, client):
    for i in range(3):
        kw = dict(model=server.model_id, prompt=f"Once upon a time, in a village number {i},", max_tokens=24,
                  temperature=0)
        whole = client.completions.create(**kw)
        parts = list(client.completions.create(stream=True, **kw))
        assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text
        assert parts[-1].choices[0].finish_reason == whole.choices[0].finish_reason
        assert whole.usage.completion_tokens == 24 or whole.choices[0].finish_reason == "stop"

        ckw = dict(model=server.model_id, messages=chat_messages(i), max_tokens=32, temperature=0)
        whole = client.chat.completions.create(**ckw)
        chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **ckw))
        assert chunks[0].choices[0].delta.role == "assistant"
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_sixteen_concurrent_clients(server, client):
    def one(i):
        kw = dict(model=server.model_id, messages=chat_messages(i), max_tokens=16 + i, temperature=0, ignore_eos=True)
        if i % 2:
            chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                         extra_body={"ignore_eos": True},
                                                         **{k: v for k, v in kw.items() if k != "ignore_eos"}))
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[-1].usage
        r = client.chat.completions.create(extra_body={"ignore_eos": True},
                                           **{k: v for k, v in kw.items() if k != "ignore_eos"})
        return r.choices[0].message.content, r.usage

    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, range(16)))
    for i, (text, usage) in enumerate(results):
        assert usage.completion_tokens == 16 + i
        assert text
    # The shared system prompt was served from the prefix cache for most of them.
    m = server.metrics()
    assert m["tern_prefix_cache_hits_total"] > 0


def test_batch_invariance_among_31_others(server):
    """A greedy (or seeded) request gives the same tokens alone as among 31 others of varied
    lengths arriving at different times."""
    rng = random.Random(5)
    bodies = []
    for i in range(32):
        prompt = " ".join(["The history of computing is long."] * rng.randint(1, 40)) + f" Part {i}:"
        body = {"prompt": prompt, "max_tokens": rng.randint(4, 40), "ignore_eos": True, "logprobs": 1}
        body.update({"temperature": 0} if i % 3 else {"temperature": 0.9, "seed": i})
        bodies.append(body)
    alone = []
    for b in bodies:
        status, r = server.post("/v1/completions", b)
        assert status == 200, r
        alone.append(r)
    together = [None] * 32

    def send(i):
        time.sleep(rng.random() * 1.5)
        status, r = server.post("/v1/completions", bodies[i])
        assert status == 200, r
        together[i] = r

    threads = [threading.Thread(target=send, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(32):
        a, t = alone[i]["choices"][0], together[i]["choices"][0]
        assert t["text"] == a["text"], i
        assert t["logprobs"]["token_logprobs"] == a["logprobs"]["token_logprobs"], i


def test_cancelled_stream_frees_its_blocks(server):
    server.wait_for_metric("tern_kv_blocks_used", 0)
    generated_before = server.metrics()["tern_generation_tokens_total"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", "/v1/completions", body=json.dumps(
        {"prompt": "Count to one thousand:", "max_tokens": 2000, "ignore_eos": True, "stream": True}),
        headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    for _ in range(5):
        assert resp.fp.readline()
    assert server.metrics()["tern_kv_blocks_used"] > 0
    conn.sock.close()
    conn.close()
    # The blocks come back within a fraction of a second (a few seconds allowed for a loaded machine);
    # the request was cancelled, not run to its 2000 tokens.
    m = server.wait_for_metric("tern_kv_blocks_used", 0, timeout=5.0)
    assert m["tern_kv_blocks_used"] == 0
    assert m["tern_requests_running"] == 0
    assert m["tern_generation_tokens_total"] - generated_before < 1000


BAD_REQUESTS = [
    # (endpoint, body, the parameter the error must name)
    ("completions", {}, "prompt"),
    ("completions", {"prompt": 5}, "prompt"),
    ("completions", {"prompt": []}, "prompt"),
    ("completions", {"prompt": [1, 2, 10**9]}, "prompt"),
    ("completions", {"prompt": [1, -2]}, "prompt"),
    ("completions", {"prompt": [1, 2.5]}, "prompt"),
    ("completions", {"prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
    ("completions", {"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ("completions", {"prompt": "hi", "max_tokens": 1.5}, "max_tokens"),
    ("completions", {"prompt": "hi", "max_tokens": 2048}, "max_tokens"),
    ("completions", {"prompt": "word " * 3000}, "prompt"),
    ("completions", {"prompt": "hi", "temperature": -1}, "temperature"),
    ("completions", {"prompt": "hi", "temperature": "hot"}, "temperature"),
    ("completions", {"prompt": "hi", "top_p": 0}, "top_p"),
    ("completions", {"prompt": "hi", "top_p": 1.5}, "top_p"),
    ("completions", {"prompt": "hi", "top_k": -5}, "top_k"),
    ("completions", {"prompt": "hi", "min_p": 2}, "min_p"),
    ("completions", {"prompt": "hi", "presence_penalty": 3}, "presence_penalty"),
    ("completions", {"prompt": "hi", "frequency_penalty": -2.5}, "frequency_penalty"),
    ("completions", {"prompt": "hi", "repetition_penalty": 0}, "repetition_penalty"),
    ("completions", {"prompt": "hi", "seed": "x"}, "seed"),
    ("completions", {"prompt": "hi", "n": 0}, "n"),
    ("completions", {"prompt": "hi", "n": 1000}, "n"),
    ("completions", {"prompt": "hi", "stop": 3}, "stop"),
    ("completions", {"prompt": "hi", "stop": [""]}, "stop"),
    ("completions", {"prompt": "hi", "logprobs": 50}, "logprobs"),
    ("completions", {"prompt": "hi", "logprobs": True}, "logprobs"),
    ("completions", {"prompt": "hi", "echo": "yes"}, "echo"),
    ("completions", {"prompt": "hi", "stream": 1}, "stream"),
    ("completions", {"prompt": "hi", "stream_options": {"include_usage": True}}, "stream_options"),
    ("completions", {"prompt": "hi", "ignore_eos": "no"}, "ignore_eos"),
    ("completions", {"prompt": "hi", "model": "gpt-4"}, "model"),
    ("completions", {"prompt": "hi", "model": 7}, "model"),
    ("completions", {"prompt": "hi", "suffix": "x"}, "suffix"),
    ("completions", {"prompt": "hi", "logit_bias": {"1": 5}}, "logit_bias"),
    ("chat/completions", {}, "messages"),
    ("chat/completions", {"messages": []}, "messages"),
    ("chat/completions", {"messages": "hi"}, "messages"),
    ("chat/completions", {"messages": [{"content": "hi"}]}, "messages[0].role"),
    ("chat/completions", {"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ("chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("chat/completions", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
    ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, "top_logprobs"),
    ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 30},
     "top_logprobs"),
    ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": -1},
     "max_completion_tokens"),
    ("chat/completions", {"messages": [{"role": "user", "content": "hi"}], "echo": True}, "echo"),
]


@pytest.mark.parametrize("endpoint,body,param", BAD_REQUESTS, ids=[f"{i}-{p}" for i, (_, _, p) in enumerate(BAD_REQUESTS)])
def test_bad_request(server, endpoint, body, param):
    before = server.metrics()["tern_engine_steps_total"]
    status, r = server.post(f"/v1/{endpoint}", body)
    assert status == 400, r
    err = r["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param, err
    assert server.metrics()["tern_engine_steps_total"] == before  # never reached the engine


def test_malformed_bodies(server):
    for raw in [b"{not json", b"[1, 2]", b'{"prompt": "\xff\xfe"}', b'{"prompt": "ok"', b""]:
        status, data = server.request("POST", "/v1/completions", raw)
        assert status == 400, raw
        assert json.loads(data)["error"]["type"] == "invalid_request_error"
    status, data = server.request("POST", "/v1/completions", b'{"prompt": "' + b"a" * (9 << 20) + b'"}')
    assert status == 400 and "larger than" in json.loads(data)["error"]["message"]
    status, data = server.request("GET", "/v1/nothing")
    assert status == 404 and "error" in json.loads(data)


def test_sampling_parameters(server, client):
    mid = server.model_id
    # n choices, reproducible with a seed; different choices differ.
    a = client.completions.create(model=mid, prompt="My favourite colour is", max_tokens=12, n=3, seed=7,
                                  temperature=1.0)
    b = client.completions.create(model=mid, prompt="My favourite colour is", max_tokens=12, n=3, seed=7,
                                  temperature=1.0)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert sorted(c.index for c in a.choices) == [0, 1, 2]
    assert len({c.text for c in a.choices}) > 1
    # Stop strings cut the text before the stop.
    full = client.completions.create(model=mid, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0).choices[0].text
    cut = client.completions.create(model=mid, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=["7"])
    assert cut.choices[0].text == full.split("7")[0] and cut.choices[0].finish_reason == "stop"
    # Echo, logprobs, max_tokens with ignore_eos.
    r = client.completions.create(model=mid, prompt="Hello", max_tokens=5, temperature=0, echo=True, logprobs=3,
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].text.startswith("Hello") and r.usage.completion_tokens == 5
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 5 and all(len(t) == 3 for t in lp.top_logprobs)
    assert all(x <= 0 for x in lp.token_logprobs)
    # Greedy: the chosen token is the most likely one.
    assert all(abs(max(t.values()) - x) < 1e-6 for t, x in zip(lp.top_logprobs, lp.token_logprobs))
    c = client.chat.completions.create(model=mid, messages=chat_messages(0), max_tokens=6, temperature=0,
                                       logprobs=True, top_logprobs=2)
    assert len(c.choices[0].logprobs.content) == c.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 for t in c.choices[0].logprobs.content)
    # Token-id prompts and several prompts per request.
    r = client.completions.create(model=mid, prompt=[[1, 2, 3], [4, 5]], max_tokens=3, temperature=0)
    assert len(r.choices) == 2
    # top_k / min_p / penalties are accepted.
    r = client.completions.create(model=mid, prompt="Hi", max_tokens=4, temperature=0.7, presence_penalty=0.5,
                                  frequency_penalty=0.5, extra_body={"top_k": 20, "min_p": 0.05,
                                                                     "repetition_penalty": 1.1})
    assert r.choices[0].finish_reason in ("stop", "length")


def test_prefix_cache_hit_reported(server, client):
    msgs = chat_messages(3)
    client.chat.completions.create(model=server.model_id, messages=msgs, max_tokens=2, temperature=0)
    r = client.chat.completions.create(model=server.model_id, messages=msgs, max_tokens=2, temperature=0)
    assert r.usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens - 16
    assert server.metrics()["tern_prefix_cache_hit_rate"] > 0


def test_no_leaked_blocks_after_1000_mixed_requests(server):
    rng = random.Random(11)

    def one(i):
        kind = rng.randint(0, 9)
        body = {"prompt": f"Request {i}: " + "abc " * rng.randint(0, 30), "max_tokens": rng.randint(1, 4),
                "temperature": rng.choice([0, 0.8])}
        if kind == 0:  # invalid
            body["max_tokens"] = -1
            status, _ = server.post("/v1/completions", body)
            return status == 400
        if kind == 1:  # streamed, abandoned after the first chunk
            body.update(stream=True, max_tokens=50, ignore_eos=True)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.fp.readline()
            conn.sock.close()
            conn.close()
            return resp.status == 200
        if kind == 2:
            body["n"] = 2
        if kind == 3:
            body["stream"] = True
            status, data = server.request("POST", "/v1/completions", body)
            return status == 200 and data.endswith(b"data: [DONE]\n\n")
        if kind == 4:
            status, r = server.post("/v1/chat/completions", {"messages": chat_messages(i), "max_tokens": 3})
            return status == 200
        status, r = server.post("/v1/completions", body)
        return status == 200

    with ThreadPoolExecutor(16) as ex:
        ok = list(ex.map(one, range(1000)))
    assert all(ok)
    m = server.wait_for_metric("tern_kv_blocks_used", 0, timeout=5)
    assert m["tern_kv_blocks_used"] == 0
    assert m["tern_requests_running"] == 0 and m["tern_requests_waiting"] == 0
    assert server.wait_for_metric("tern_http_requests_in_flight", 0)["tern_http_requests_in_flight"] == 0


def test_queue_full_answers_429(default_model):
    s = TernServer(default_model, "--max-running", "1", "--max-queue", "1", "-c", "1024")
    try:
        conns = []
        for i in range(2):  # fills the running slot and the one queue slot
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            conn.request("POST", "/v1/completions", body=json.dumps(
                {"prompt": f"Story {i}:", "max_tokens": 1000, "ignore_eos": True, "stream": True}),
                headers={"Content-Type": "application/json"})
            conns.append(conn)
        # Both hold their admission slots before the third arrives. Nothing is read from them: which
        # of the two runs first is the server's choice, and the queued one sends its first token only
        # after the running one has finished (on a loaded machine, longer than any fixed timeout).
        assert s.wait_for_metric("tern_http_requests_in_flight", 2, timeout=30)["tern_http_requests_in_flight"] == 2
        status, r = s.post("/v1/completions", {"prompt": "one more", "max_tokens": 2})
        assert status == 429
        assert r["error"]["type"] == "rate_limit_error"
        assert s.metrics()['tern_requests_rejected_total{reason="queue_full"}'] >= 1
        for c in conns:
            c.sock.close()
            c.close()
        s.wait_for_metric("tern_http_requests_in_flight", 0)
        status, r = s.post("/v1/completions", {"prompt": "now there is room", "max_tokens": 2})
        assert status == 200
    finally:
        assert s.terminate() == 0


def test_api_key(default_model):
    s = TernServer(default_model, "--api-key", "sekret", "-c", "512")
    try:
        status, r = s.post("/v1/completions", {"prompt": "hi", "max_tokens": 1})
        assert status == 401 and r["error"]["code"] == "invalid_api_key"
        status, r = s.post("/v1/completions", {"prompt": "hi", "max_tokens": 1}, headers={"Authorization": "Bearer nope"})
        assert status == 401
        status, _ = s.request("GET", "/v1/models")
        assert status == 401
        c = openai.OpenAI(base_url=s.base_url, api_key="sekret", max_retries=0)
        assert c.completions.create(model=s.model_id, prompt="hi", max_tokens=1).usage.completion_tokens <= 1
        assert s.request("GET", "/health")[0] == 200
        assert s.request("GET", "/metrics")[0] == 200
    finally:
        assert s.terminate() == 0


def test_sigterm_drains_running_requests(default_model):
    s = TernServer(default_model, "-c", "512", "--drain-timeout", "30")
    result = {}

    def long_request():
        result["r"] = s.post("/v1/completions", {"prompt": "Tell me a story:", "max_tokens": 120, "ignore_eos": True})

    t = threading.Thread(target=long_request)
    t.start()
    s.wait_for_metric("tern_requests_running", 1)
    s.proc.send_signal(15)
    time.sleep(0.3)
    try:
        status, r = s.post("/v1/completions", {"prompt": "late", "max_tokens": 1}, timeout=5)
        assert status == 503
    except (ConnectionError, OSError):
        pass  # the listener may already be closed
    t.join(60)
    status, r = result["r"]
    assert status == 200 and r["usage"]["completion_tokens"] == 120
    assert s.proc.wait(timeout=30) == 0
