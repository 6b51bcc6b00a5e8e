import sys, time, subprocess, tempfile, os
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
from engine_support import MODEL_NAME, VllmServer
from tiny_model import TOKENIZER_VOCAB, build
from concurrent.futures import ThreadPoolExecutor
arm = sys.argv[1]
xargs = {} if arm == "active" else {"qr_bypass": "true"}
with tempfile.TemporaryDirectory() as scratch:
    model = build(Path(scratch) / "m", vocab_size=TOKENIZER_VOCAB)
    server = VllmServer(model, Path(scratch) / "run", {"QR_LOG_PATH": ""})
    server.start()
    try:
        client = server.client()
        def one():
            client.completions.create(model=MODEL_NAME, prompt="The entropy source", max_tokens=64, extra_body={"vllm_xargs": xargs, "ignore_eos": True})
        for _ in range(5): one()
        pid = str(server.proc.pid)
        spy = subprocess.Popen(["/work/venv/bin/py-spy", "record", "--subprocesses", "-p", pid, "-d", "15", "-f", "raw", "-o", f"/work/scratch/spy/{arm}.txt", "-r", "200"])
        end = time.time() + 16
        n = 0
        while time.time() < end: one(); n += 1
        spy.wait()
        print(arm, "requests", n)
    finally:
        server.stop()
