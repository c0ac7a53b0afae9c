#!/usr/bin/env python3
"""Load for scripts/cluster-test.sh: conversations that talk to the silos' HTTP APIs until told to stop, resending a
turn (same X-Turn-Id) until it completes, and requests without a conversation id beside them, recording every attempt.
Standard library only.

  cluster-driver.py run URL[,URL...] OUT.jsonl STOPFILE   conversations until STOPFILE exists; one line per turn
  cluster-driver.py report OUT.jsonl FAULTS DEATHS PSQL... figures per fault, and the stored histories checked;
                                                           DEATHS: "MARK SILO_IP SURVIVOR_LOG" per silo fault
"""
import http.client
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

CONVERSATIONS = 4
# one more load of requests without a conversation id, streamed and whole in turn: nothing stored, nothing to resume
STATELESS = "stateless"
# conv-0 streams long replies so that a fault lands in the middle of one; the others take short turns
LONG_TOKENS, SHORT_TOKENS = 160, 12
# a turn that has not completed after this long counts as lost
GIVE_UP_S = 60
# the short conversations send their last exchanges only (the tiny model's context is 2048 tokens)
KEEP_MESSAGES = 8
# a silo cut off by the partition does not refuse connections, it drops them: the client moves on after a second
CONNECT_S, READ_S = 1, 8


def attempt(url, conv, turn_id, messages, max_tokens, stream=True):
    """One try: {status, reply (text or None), error (text or None), retry_after (the header of a refusal),
    stream_error (the error event a stream ended with: {type, code})}. Conversations stream, as the clients that matter
    do; without a conversation (conv None) the reply may also come whole."""
    u = urlparse(url)
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"Content-Type": "application/json"}
    if conv is not None:
        headers.update({"X-Conversation-Id": conv, "X-Turn-Id": turn_id})
    result = {"status": None, "reply": None, "error": None, "retry_after": None, "stream_error": None}
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=CONNECT_S)
    try:
        conn.connect()
        conn.sock.settimeout(READ_S)
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        r = conn.getresponse()
        result["status"] = r.status
        if r.status != 200:
            result["retry_after"] = r.getheader("Retry-After")
            result["error"] = r.read().decode("utf-8", "replace")[:200]
            return result
        if not stream:
            reply = json.loads(r.read())
            result["reply"] = reply["choices"][0]["message"]["content"] or ""
            return result
        text, usage, done, error = [], None, False, None
        for raw in r:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                error = {"type": event["error"].get("type"), "code": event["error"].get("code")}
                continue
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
        result["stream_error"] = error
        if error or not done or usage is None:
            result["error"] = f"stream ended: error={error} done={done}"
        else:
            result["reply"] = "".join(text)
        return result
    except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        return result
    finally:
        conn.close()


def server_failure(a):
    """A 500, or a stream that ended with an error event other than the 503's (the cluster failing over, the store
    away): the server's fault, never the fault's expected face."""
    error = a.get("stream_error")
    return a["status"] == 500 or (error is not None and error.get("type") != "service_unavailable")


def conversation(index, urls, out, lock, stop):
    conv = f"conv-{index}-{uuid.uuid4().hex[:6]}"
    max_tokens = LONG_TOKENS if index == 0 else SHORT_TOKENS
    messages, turn = [], 0
    while not stop():
        marker = f"turn-{turn}-of-{conv}"
        # conv-0 keeps only its last exchange, so its long replies never outgrow the context
        ask = ([] if index == 0 else messages) + [{"role": "user", "content": f"Tell me more ({marker})."}]
        turn_id, start, attempts, reply = uuid.uuid4().hex, time.time(), [], None
        while reply is None and time.time() - start < GIVE_UP_S:
            url = random.choice(urls)
            t = time.time()
            result = attempt(url, conv, turn_id, ask, max_tokens)
            reply = result.pop("reply")
            attempts.append({"url": url, "t": t, "end": time.time(), **result})
            if result["status"] in (400, 401, 404, 413):
                break  # the request itself is wrong: resending cannot help
            if reply is None:
                retry_after = result["retry_after"] if result["status"] == 503 else None
                time.sleep(min(float(retry_after), 0.5) if retry_after is not None else 0.2)
        record = {"conv": conv, "index": index, "turn": turn, "marker": marker, "start": start, "end": time.time(),
                  "attempts": attempts, "ok": reply is not None, "reply": reply}
        with lock:
            out.write(json.dumps(record) + "\n")
            out.flush()
        if reply is None:
            turn += 1
            continue
        messages = (ask + [{"role": "assistant", "content": reply}])[-KEEP_MESSAGES:]
        turn += 1


def stateless(urls, out, lock, stop):
    """Requests without a conversation id, streamed and whole in turn, each resent until it is answered."""
    turn = 0
    while not stop():
        marker = f"turn-{turn}-of-{STATELESS}"
        ask = [{"role": "user", "content": f"Tell me something ({marker})."}]
        start, attempts, reply = time.time(), [], None
        while reply is None and time.time() - start < GIVE_UP_S:
            url = random.choice(urls)
            t = time.time()
            result = attempt(url, None, None, ask, SHORT_TOKENS, stream=turn % 2 == 0)
            reply = result.pop("reply")
            attempts.append({"url": url, "t": t, "end": time.time(), **result})
            if result["status"] in (400, 401, 404, 413):
                break
            if reply is None:
                retry_after = result["retry_after"] if result["status"] == 503 else None
                time.sleep(min(float(retry_after), 0.5) if retry_after is not None else 0.2)
        record = {"conv": STATELESS, "index": None, "turn": turn, "marker": marker, "start": start,
                  "end": time.time(), "attempts": attempts, "ok": reply is not None, "reply": reply}
        with lock:
            out.write(json.dumps(record) + "\n")
            out.flush()
        turn += 1


def run(urls, path, stopfile):
    import os
    lock = threading.Lock()
    with open(path, "a") as out:
        threads = [threading.Thread(target=conversation,
                                    args=(i, urls, out, lock, lambda: os.path.exists(stopfile)))
                   for i in range(CONVERSATIONS)]
        threads.append(threading.Thread(target=stateless, args=(urls, out, lock, lambda: os.path.exists(stopfile))))
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def report(path, faults_path, deaths_path, psql):
    turns = [json.loads(line) for line in open(path)]
    deaths = {float(mark): (silo, log) for mark, silo, log in (line.split() for line in open(deaths_path))}
    faults = [line.split(maxsplit=1) for line in open(faults_path) if line.strip()]
    faults = [(float(t), name.strip()) for t, name in faults]
    lost = sum(not t["ok"] for t in turns)
    attempts = [a for t in turns for a in t["attempts"]]
    errors500 = sum(a["status"] == 500 for a in attempts)
    stream_errors = sum(a["status"] != 500 and server_failure(a) for a in attempts)
    # a 503 tells the client when to resend; one without Retry-After leaves it to guess
    bare503 = sum(a["status"] == 503 and not a.get("retry_after") for a in attempts)
    failed = sum(a["status"] != 200 or a["error"] is not None for a in attempts)
    stateless_turns = sum(t["conv"] == STATELESS for t in turns)
    print(f"turns {len(turns)} ({stateless_turns} without a conversation id), attempts {len(attempts)} "
          f"({failed} failed and resent), requests lost {lost}, 500s {errors500}, "
          f"server errors in streams {stream_errors}, 503s without Retry-After {bare503}")
    for a in attempts:
        if server_failure(a) or (a["status"] == 503 and not a.get("retry_after")):
            print(f"  {a['url']} at {a['t']:.2f}: status {a['status']}, {a['error']}")
    for i, (at, name) in enumerate(faults):
        until = faults[i + 1][0] if i + 1 < len(faults) else float("inf")
        window = [t for t in turns if t["end"] >= at and t["start"] < until]
        served = [a["end"] for t in window for a in t["attempts"]
                  if a["end"] > at and a["status"] == 200 and a["error"] is None]
        first = min(served, default=None)
        first0 = min((a["end"] for t in window if t["index"] == 0 for a in t["attempts"]
                      if a["end"] > at and a["status"] == 200 and a["error"] is None), default=None)
        hit = [t for t in window if t["start"] <= at]
        resent = sum(len(t["attempts"]) > 1 for t in window)
        declared = f"declared dead after {secs(declared_dead(*deaths[at], at), at)}, " if at in deaths else ""
        print(f"{name}: {declared}first reply after {secs(first, at)}, conv-0 (long stream) after {secs(first0, at)}; "
              f"in flight at the fault {len(hit)}, resent {resent}, "
              f"longest turn {max((t['end'] - t['start'] for t in window), default=0):.2f} s, "
              f"503s {sum(a['status'] == 503 for t in window for a in t['attempts'])}")
    problems = check_histories(turns, psql)
    for p in problems:
        print("history:", p)
    print(f"histories checked: {len({t['conv'] for t in turns if t['index'] is not None})} conversations, "
          f"{len(problems)} problems")
    return 0 if lost == errors500 == stream_errors == bare503 == 0 and not problems else 1


def declared_dead(silo, survivor_log, since):
    """When the survivor's log (each line led by the epoch time it was written) first said, after the fault, that the
    silo was declared dead (the MembershipLog's line): the end of failure detection as the cluster sees it."""
    for line in open(survivor_log, errors="replace"):
        stamp, _, text = line.partition(" ")
        if float(stamp) > since and f"{silo}:11111" in text and "left the cluster: declared dead" in text:
            return float(stamp)
    return None


def secs(t, since):
    return "never" if t is None else f"{t - since:.2f} s"


def check_histories(turns, psql):
    """Each stored conversation holds each of its user turns once and its last reply: nothing lost, nothing twice."""
    rows = subprocess.run(psql + ["-tAc", "SELECT grain_id_extension, encode(payload, 'hex') FROM weft_grain_state "
                                  "WHERE payload IS NOT NULL"], capture_output=True, text=True, check=True).stdout
    stored = {}
    for line in rows.splitlines():
        key, _, payload = line.partition("|")
        stored[key] = bytes.fromhex(payload).decode("utf-8", "replace")
    problems = []
    by_conv = {}
    for t in turns:
        if t["ok"] and t["index"] is not None:
            by_conv.setdefault(t["conv"], []).append(t)
    for conv, done in by_conv.items():
        payload = next((v for k, v in stored.items() if k.endswith("/" + conv)), None)
        if payload is None:
            problems.append(f"{conv}: no stored state")
            continue
        # The stored history holds each user message of the last request once, and the rendered chat text of the KV
        # cache holds it once more. conv-0 sends its last turn alone, which replaces the history before it: only that
        # turn is there to count.
        keep = 1 if done[0]["index"] == 0 else KEEP_MESSAGES // 2
        recent = sorted(done, key=lambda t: t["turn"])[-keep:]
        counts = {t["marker"]: payload.count(t["marker"]) for t in recent}
        if len(set(counts.values())) != 1 or 0 in counts.values():
            problems.append(f"{conv}: user turns stored unevenly (lost or twice): {counts}")
        # compared as JSON values: the store escapes the control characters a random model's text has
        last = max(done, key=lambda t: t["turn"])
        if last["reply"] and last["reply"] != last_assistant(payload):
            problems.append(f"{conv}: the last reply is not the stored one")
    return problems


def last_assistant(payload):
    """The content of the last assistant message of a stored conversation (the ADO.NET store's JSON, whose
    collections are {"$values": [...]} objects)."""
    messages = json.loads(payload).get("Messages", {})
    messages = messages.get("$values", []) if isinstance(messages, dict) else messages
    return next((m.get("Content") for m in reversed(messages) if m.get("Role") == "assistant"), None)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2].split(","), sys.argv[3], sys.argv[4])
    else:
        sys.exit(report(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
