"""What a new user meets first in `reelrt serve` and `reelrt run`, each held to what it should say."""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time

import pytest

from reelrt.bench.serving import free_port
from reelrt.cli import main
from reelrt.runtime import load
from reelrt.runtime.command import printable
from tests.serving import request, running_server


def test_serve_without_its_extra_is_one_line_naming_it(gpt2_tiny_bundle):
    probe = ("import sys; sys.modules['uvicorn'] = None; from reelrt.cli import main;"
             f" sys.exit(main(['serve', {str(gpt2_tiny_bundle)!r}]))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "reelrt[serve]" in run.stderr and "Traceback" not in run.stderr


def test_serve_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("port to listen on (default: 8000)", "slots per GPT-2 bundle (default: 4)",
                    "(default: 1024)", "(default: 127.0.0.1)", "(default: 64)", "(default: warning)"):
        assert default in text


def test_log_level_info_prints_a_start_up_line_and_an_access_log(gpt2_tiny_bundle, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reelrt", "serve", f"npc={gpt2_tiny_bundle}", "--port",
                                 str(port), "--threads", "1", "--parallel", "2", "--log-level", "info"],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            for _ in range(300):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", "/v1/models")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(30)
    text = log.read_text()
    assert f"serving npc (text-generation, 2 slots, 1 threads) at http://127.0.0.1:{port}" in text
    assert '"GET /v1/models HTTP/1.1" 200' in text


@pytest.fixture(scope="module")
def server(gpt2_tiny_bundle):
    with running_server(f"npc={gpt2_tiny_bundle}", "--threads", "1", "--parallel", "2") as port:
        yield port


@pytest.mark.parametrize("path, key", [("/v1/completions", "max_tokens"),
                                       ("/v1/chat/completions", "max_completion_tokens")])
def test_max_tokens_errors_speak_the_apis_name_and_the_models_range(server, gpt2_tiny_bundle, path, key):
    context = load(gpt2_tiny_bundle, threads=1).config.max_context
    hello = "Hello there, traveller, what brings you"
    body = {"model": "npc", key: 100_000, **({"prompt": hello} if key == "max_tokens" else
                                             {"messages": [{"role": "user", "content": hello}]})}
    status, _, answer = request(server, "POST", path, body)
    error = json.loads(answer)["error"]
    assert status == 400 and error["param"] == key
    assert error["message"].startswith(f"{key} must be an int from 1 to {context - 1} (the model's {context}-token")
    assert "max_new_tokens" not in error["message"]
    status, _, answer = request(server, "POST", path, {**body, key: context - 2})
    message = json.loads(answer)["error"]["message"]
    assert status == 400 and f"{key} {context - 2} exceed the model's {context}-token context: ask for {key}" in message


def test_server_metadata_names_no_process_id(server):
    status, _, answer = request(server, "GET", "/v2")
    meta = json.loads(answer)
    assert status == 200 and meta["name"] == "reelrt" and "pid" not in json.dumps(meta)


def test_run_names_its_own_options_and_takes_stop_and_repetition_penalty(gpt2_tiny_bundle, capsys):
    gen = load(gpt2_tiny_bundle, threads=1)
    long = "the value of the name " * 200
    assert main(["run", str(gpt2_tiny_bundle), "--prompt", long, "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "--truncate" in err and "truncate=True" not in err and err.count("\n") == 1
    assert main(["run", str(gpt2_tiny_bundle), "--prompt", long, "--threads", "1", "--truncate",
                 "--max-new-tokens", "4"]) == 0
    capsys.readouterr()
    free = gen.generate("The value", max_new_tokens=30, repetition_penalty=1.4)
    stop = free[4:6]
    assert main(["run", str(gpt2_tiny_bundle), "--prompt", "The value", "--max-new-tokens", "30", "--threads", "1",
                 "--repetition-penalty", "1.4", "--stop", stop]) == 0
    want = gen.generate("The value", max_new_tokens=30, repetition_penalty=1.4, stop=[stop])
    assert capsys.readouterr().out == printable("The value" + want) + "\n"


def test_run_escapes_what_a_terminal_would_not_print():
    assert printable("plain text\nand a tab\t") == "plain text\nand a tab\t"
    assert printable("bell\x07 esc\x1b[2J nul\x00 del\x7f zwsp\u200b") == \
        "bell\\x07 esc\\x1b[2J nul\\x00 del\\x7f zwsp\\u200b"
    assert all(c.isprintable() or c in "\n\t" for c in printable("".join(map(chr, range(0x2100)))))
