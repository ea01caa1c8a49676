#!/usr/bin/env python3
"""Memory of web chat in the real careloop process with 5,000 open sessions.

    scripts/bench_webchat_memory.sh [--sessions N] [--write]   (builds careloop, then runs this)

Starts `careloop serve` (embedded default, real model loaded), reads the process's resident
memory (VmRSS) when idle, after creating N sessions (POST /webchat/session), and after opening an
event stream (GET /webchat/events, server-sent events) for every one of them and receiving its
first bytes; then sends one message in 50 of the sessions to check the streams still work.
Prints a Markdown table; --write replaces the bench_webchat_memory section of BENCHMARKS.md.
"""
import argparse, asyncio, datetime, json, os, pathlib, resource, signal, socket, subprocess, sys, tempfile, time, urllib.request

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")

async def open_stream(port, token, streams):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /webchat/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    if b" 200 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    streams.append((reader, writer))

async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--content", required=True)
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp()
    port = free_port()
    env = {"PATH": os.environ["PATH"], "HOME": tmp, "CARELOOP_SERVER__PORT": str(port),
           "CARELOOP_LLM__MODEL_PATH": a.model, "CARELOOP_CONTENT__DIR": a.content,
           "CARELOOP_LOG__FILTER": "warn", "CARELOOP_CHANNELS__LIMITS__PER_IP_PER_MINUTE": "100000000"}
    proc = subprocess.Popen(["bash", "-c", f"ulimit -n {hard}; exec {a.bin} serve"], cwd=tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/log", "w"))
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                    break
            except Exception:
                time.sleep(0.5)
        time.sleep(2)
        base = rss_kib(proc.pid)
        tokens = [post(f"http://127.0.0.1:{port}/webchat/session", {})["token"] for _ in range(a.sessions)]
        time.sleep(1)
        idle = rss_kib(proc.pid)
        streams = []
        sem = asyncio.Semaphore(200)
        async def one(t):
            async with sem:
                await open_stream(port, t, streams)
        await asyncio.gather(*(one(t) for t in tokens))
        await asyncio.sleep(2)
        connected = rss_kib(proc.pid)
        # The streams still work: a message in 50 sessions gets at least its typing event.
        def say(t, i):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/webchat/messages",
                data=json.dumps({"text": "Hello", "client_message_id": f"m{i}"}).encode(),
                headers={"content-type": "application/json", "authorization": f"Bearer {t}"})
            return urllib.request.urlopen(req, timeout=30).status
        statuses = [say(tokens[i], i) for i in range(50)]
        async def first_event(reader):
            try:
                data = await asyncio.wait_for(reader.read(4096), 60)
                return b"data:" in data
            except Exception:
                return False
        # Streams are in connection order, not token order: check all, count those with data.
        results = await asyncio.gather(*(first_event(r) for r, _ in streams))
        got = sum(results)
        for _, w in streams:
            w.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except Exception:
            proc.kill()
    n = a.sessions
    per_idle = (idle - base) * 1024 / n
    per_conn = (connected - idle) * 1024 / n
    lines = [
        "<!-- bench_webchat_memory:start -->",
        f"Measured {datetime.date.today()} with `scripts/bench_webchat_memory.sh --sessions {n}`: the real `careloop serve` "
        "process (embedded default, model loaded), resident memory (VmRSS) read from /proc.",
        "",
        "| state | VmRSS (MiB) | per session |",
        "| --- | --- | --- |",
        f"| started, model loaded, no session | {base / 1024:.1f} | - |",
        f"| {n} sessions created, no browser connected (idle) | {idle / 1024:.1f} | {per_idle:.0f} B |",
        f"| {n} sessions each with an open event stream | {connected / 1024:.1f} | {per_conn:.0f} B more |",
        "",
        f"Check that the streams work under that load: 50 messages posted ({sorted(set(statuses))}), "
        f"{got} of {n} open streams had received data when read.",
        "<!-- bench_webchat_memory:end -->",
    ]
    table = "\n".join(lines)
    print(table)
    if a.write:
        sys.path.insert(0, str(pathlib.Path(__file__).parent))
        from benchmarks_md import write_section
        write_section("bench_webchat_memory", "## Web chat memory with 5,000 sessions (issue 5)", table)

asyncio.run(main())
