#!/usr/bin/env python3
"""Renders tests/Weft.Models.Tests/Chat/Templates/<family>.jinja over conversations.json with Python's jinja2
exactly as transformers' apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, its tojson, raise_exception and strftime_now), and writes golden/<family>.json, which the C# tests
compare byte for byte (an expected failure by the reason given to raise_exception, or by Python's error message).
CI does not run Python: the goldens are committed. golden/sources.json records where each template came from and its
sha256, which the tests check: a new or changed template needs its entry.

Run from the repository root after changing a template or a conversation: python3 scripts/render-golden-templates.py
"""
import json
import pathlib
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "Weft.Models.Tests" / "Chat" / "Templates"


class TemplateRaised(Exception):
    pass


def environment(now):
    # transformers.utils.chat_template_utils._compile_jinja_template
    def raise_exception(message):
        raise TemplateRaised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return now.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    spec = json.loads((ROOT / "conversations.json").read_text(encoding="utf-8"))
    env = environment(datetime.fromisoformat(spec["now"]))
    out_dir = ROOT / "golden"
    out_dir.mkdir(exist_ok=True)
    for family, tokens in spec["families"].items():
        template = env.from_string((ROOT / f"{family}.jinja").read_text(encoding="utf-8"))
        golden = {}
        for name, conversation in spec["conversations"].items():
            for add_generation_prompt in (True, False):
                variables = dict(messages=conversation["messages"], tools=conversation.get("tools"), documents=None,
                                 add_generation_prompt=add_generation_prompt, **tokens,
                                 **conversation.get("kwargs", {}))
                key = f"{name}|{'with' if add_generation_prompt else 'without'}-generation-prompt"
                try:
                    golden[key] = {"text": template.render(**variables)}
                except TemplateRaised as e:
                    golden[key] = {"raise": str(e)}
                except jinja2.exceptions.TemplateError as e:
                    golden[key] = {"error": f"{type(e).__name__}: {e}"}
                except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                    golden[key] = {"error": f"{type(e).__name__}: {e}"}
        (out_dir / f"{family}.json").write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n",
                                                encoding="utf-8")
        counts = {kind: sum(kind in g for g in golden.values()) for kind in ("text", "raise", "error")}
        print(f"{family}: {counts['text']} texts, {counts['raise']} raised, {counts['error']} errors")


if __name__ == "__main__":
    main()
